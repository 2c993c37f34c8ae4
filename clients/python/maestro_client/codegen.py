"""Generates the ``maestro.v1`` Python stubs from the repository's ``proto/`` with grpcio-tools.

Run ``python maestro_client/codegen.py`` from ``clients/python`` (as a file: the package itself
needs the stubs to import); the stubs land in
``clients/python/maestro/v1/`` (importable as ``maestro.v1``, the proto package's own name, which
the generated modules use to import each other).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PROTO_ROOT = HERE.parent.parent.parent / "proto"
DEFAULT_OUT = HERE.parent
PROTOS = ("maestro/v1/resources.proto", "maestro/v1/generation.proto")


def generate(proto_root: Path = DEFAULT_PROTO_ROOT, out: Path = DEFAULT_OUT) -> list[Path]:
    """Writes ``*_pb2.py`` and ``*_pb2_grpc.py`` for every Maestro proto under ``out``."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *(str(proto_root / p) for p in PROTOS),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {proto_root}")
    package = out / "maestro" / "v1"
    for init in (out / "maestro" / "__init__.py", package / "__init__.py"):
        init.touch()
    return sorted(package.glob("*_pb2*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto-root", type=Path, default=DEFAULT_PROTO_ROOT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for path in generate(args.proto_root, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
