"""Generates the ``maestro.v1`` stubs from ``proto/`` whenever the package is built, so that
``pip install clients/python`` ships them without committing generated files. (Generation runs at
import because setuptools checks the listed package directories before any build step.)"""

import importlib.util
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def generate_stubs():
    """Runs ``maestro_client/codegen.py`` (grpcio-tools comes from the build requirements)."""
    spec = importlib.util.spec_from_file_location("codegen", HERE / "maestro_client" / "codegen.py")
    codegen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codegen)
    codegen.generate()


generate_stubs()
setup()
