"""The connection flags both examples share, named and ordered as the ``maestro`` CLI's: where the
server is and the credentials to show it (the token from ``--token``, else ``--token-file``, else
``$MAESTRO_TOKEN``).

    --target 127.0.0.1:50051 --token-file token.txt                       # a token over plaintext
    --target https://maestro.example.com:443 --token-file token.txt       # TLS, grpc's bundled roots
    --target maestro.internal:50051 --tls-ca ca.pem --token-file token.txt                 # private CA
    --target maestro.internal:50051 --tls-ca ca.pem --tls-cert me.pem --tls-key me.key     # mutual TLS
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Optional

from maestro_client import MaestroClient


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--target``, the token flags and the TLS flags to ``parser``."""
    parser.add_argument("--target", default="127.0.0.1:50051",
                        help="host:port or http://host:port (plaintext), https://host:port (TLS)")
    parser.add_argument("--token", help="bearer token sent with every call (default: $MAESTRO_TOKEN)")
    parser.add_argument("--token-file", help="file holding the bearer token (--token wins over it)")
    parser.add_argument("--tls-ca", help="PEM CA of the server's certificate (TLS; default: grpc's roots)")
    parser.add_argument("--tls-cert", help="PEM client certificate chain (mutual TLS, with --tls-key)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")


def connect(args: argparse.Namespace, **options: Any) -> MaestroClient:
    """A client for what ``args`` names; ``options`` go to ``MaestroClient`` (``timeout=``)."""
    token = args.token or token_from_file(args.token_file) or os.environ.get("MAESTRO_TOKEN") or None
    return MaestroClient(args.target, token=token, root_certificates=_read(args.tls_ca),
                         private_key=_read(args.tls_key), certificate_chain=_read(args.tls_cert), **options)


def token_from_file(path: Optional[str]) -> Optional[str]:
    """The token in ``path`` less surrounding whitespace (an editor's trailing newline)."""
    return Path(path).read_text().strip() if path else None


def _read(path: Optional[str]) -> Optional[bytes]:
    return Path(path).read_bytes() if path else None
