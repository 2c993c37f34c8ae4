"""Starts the real ``maestro-server`` binary on a free loopback port for the whole session.

The binary is ``$MAESTRO_SERVER_BIN`` (default ``target/debug/maestro-server`` of the repository);
it serves the repository's test fixtures as models (``musicgen-tiny`` is a real, tiny MusicGen).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PYTHON_ROOT = HERE.parent
REPO = PYTHON_ROOT.parent.parent
sys.path.insert(0, str(PYTHON_ROOT))

from maestro_client import MaestroClient  # noqa: E402


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


@pytest.fixture(scope="session")
def target(server_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    """``host:port`` of a running server; it is stopped (SIGTERM) after the session."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    args = [str(server_bin), "--listen", f"127.0.0.1:{port}", "--metrics-listen", "127.0.0.1:0",
            "--model-root", str(REPO / "tests" / "fixtures"), "--sample-interval-ms", "100"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAESTRO_")}
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    target = f"127.0.0.1:{port}"
    try:
        wait_until_serving(target, process, log)
        yield target
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_serving(target: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with MaestroClient(target) as client:
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
