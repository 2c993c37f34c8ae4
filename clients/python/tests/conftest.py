"""Starts the real ``maestro-server`` binary on free loopback ports for the whole session: a
plaintext one that asks for no token and, when a test asks, ones that want a token over plaintext,
TLS and mutual TLS (certificates from ``pki.py``).

The binary is ``$MAESTRO_SERVER_BIN`` (default ``target/debug/maestro-server`` of the repository);
it serves the repository's test fixtures as models (``musicgen-tiny`` is a real, tiny MusicGen).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

HERE = Path(__file__).resolve().parent
PYTHON_ROOT = HERE.parent
REPO = PYTHON_ROOT.parent.parent
sys.path.insert(0, str(PYTHON_ROOT))

from maestro_client import MaestroClient  # noqa: E402
from pki import Pki, make_pki  # noqa: E402


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick for an ephemeral bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server_bin() -> Path:
    path = Path(os.environ.get("MAESTRO_SERVER_BIN", REPO / "target" / "debug" / "maestro-server"))
    if not path.is_file():
        pytest.fail(f"no server binary at {path}: build it (cargo build --bin maestro-server) or set MAESTRO_SERVER_BIN")
    return path


@contextlib.contextmanager
def running_server(server_bin: Path, log: Path, *extra: str,
                   connect: Callable[[str], MaestroClient] = MaestroClient) -> Iterator[str]:
    """Runs the server with ``extra`` flags; yields ``host:port`` once ``connect(target)`` reaches it
    (a client with the credentials its TLS needs), and stops it (SIGTERM) afterwards."""
    port = free_port()
    args = [str(server_bin), "--listen", f"127.0.0.1:{port}", "--metrics-listen", "127.0.0.1:0",
            "--model-root", str(REPO / "tests" / "fixtures"), "--sample-interval-ms", "100", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAESTRO_")}
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    target = f"127.0.0.1:{port}"
    try:
        wait_until_serving(connect(target), process, log)
        yield target
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def target(server_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running plaintext server that asks for no token."""
    with running_server(server_bin, tmp_path_factory.mktemp("server") / "server.log") as target:
        yield target


def wait_until_serving(client: MaestroClient, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
            try:
                client.wait_ready(timeout=1.0)
                return
            except Exception:
                continue
    pytest.fail(f"the server did not start within {timeout} s:\n{log.read_text()}")


@pytest.fixture()
def client(target: str):
    with MaestroClient(target) as c:
        yield c


# Servers that want a token for every Maestro RPC (telemetry too): plaintext, TLS and mutual TLS.
TOKEN = "python-test-token"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def guarded_server(server_bin: Path, directory: Path, *tls: str,
                   connect: Callable[[str], MaestroClient] = MaestroClient):
    """``running_server`` with a token file of [TOKEN] and telemetry closed, plus the ``tls`` flags."""
    tokens = directory / "tokens"
    # One field a line: a token with every right, whatever roles the server knows.
    tokens.write_text(f"# the Python client's tests\n{TOKEN}\n")
    flags = ["--auth-token-file", str(tokens), "--public-telemetry", "false", *tls]
    return running_server(server_bin, directory / "server.log", *flags, connect=connect)


@pytest.fixture(scope="session")
def token_target(server_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plaintext server that wants [TOKEN]."""
    with guarded_server(server_bin, tmp_path_factory.mktemp("token")) as target:
        yield target


@pytest.fixture(scope="session")
def tls_target(server_bin: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``localhost:port`` of a TLS server (certificate from ``pki``) that wants [TOKEN]."""
    tls = ["--tls-cert", str(pki.path("server.pem")), "--tls-key", str(pki.path("server.key"))]
    with guarded_server(server_bin, tmp_path_factory.mktemp("tls"), *tls,
                        connect=lambda target: MaestroClient(localhost(target), **tls_trust(pki))) as target:
        yield localhost(target)


@pytest.fixture(scope="session")
def mtls_target(server_bin: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``localhost:port`` of a server that also wants a client certificate signed by ``pki``'s CA."""
    tls = ["--tls-cert", str(pki.path("server.pem")), "--tls-key", str(pki.path("server.key")),
           "--tls-client-ca", str(pki.path("ca.pem"))]
    with guarded_server(server_bin, tmp_path_factory.mktemp("mtls"), *tls,
                        connect=lambda target: MaestroClient(localhost(target), **mtls_identity(pki))) as target:
        yield localhost(target)


def tls_trust(pki: Pki) -> dict[str, bytes]:
    """The TLS arguments of a client that trusts ``pki``'s CA."""
    return {"root_certificates": pki.pem("ca.pem")}


def mtls_identity(pki: Pki) -> dict[str, bytes]:
    """The TLS arguments of a client ``pki``'s mutual-TLS server accepts."""
    return {**tls_trust(pki), "private_key": pki.pem("client.key"), "certificate_chain": pki.pem("client.pem")}


def localhost(target: str) -> str:
    """``target`` by the name its certificate carries."""
    return target.replace("127.0.0.1", "localhost")
