"""A throwaway PKI made with the ``openssl`` command: a CA, a server certificate for localhost and
127.0.0.1, and a client certificate for mutual TLS, as PEM files in one directory."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# One config for every step: the CA's and the leaves' extensions, as rustls and grpc check them.
CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = maestro-test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[server]
subjectAltName = DNS:localhost,IP:127.0.0.1
extendedKeyUsage = serverAuth
[client]
subjectAltName = DNS:maestro-python-client
extendedKeyUsage = clientAuth
"""


@dataclass
class Pki:
    """Where the PEM files are; ``pem(name)`` reads one as ``MaestroClient`` takes it."""

    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name

    def pem(self, name: str) -> bytes:
        return self.path(name).read_bytes()


def make_pki(directory: Path) -> Pki:
    """Writes ``ca.pem``, ``server.pem``/``server.key`` and ``client.pem``/``client.key``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the TLS tests need the openssl command")
    config = directory / "openssl.cnf"
    config.write_text(CONFIG)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *key, "-config", str(config), "-extensions", "ca", "-subj", "/CN=maestro-test-ca",
        "-days", "2", "-keyout", "ca.key", "-out", "ca.pem")
    for leaf in ("server", "client"):
        run("req", "-new", *key, "-config", str(config), "-subj", f"/CN=maestro-test-{leaf}",
            "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr")
        run("x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", str(config), "-extensions", leaf, "-out", f"{leaf}.pem")
    return Pki(directory)
