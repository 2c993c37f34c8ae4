"""``MaestroClient`` with a token over plaintext (an interceptor adds it), over TLS and over mutual
TLS (call credentials), against real servers that want the token for every Maestro RPC."""

from __future__ import annotations

import grpc
import pytest
from conftest import TOKEN, mtls_identity, tls_trust

from maestro_client import MaestroClient, NotAllowed, ServerUnavailable
from maestro_client.credentials import BearerToken
from maestro_client.errors import exit_code


def test_a_token_over_plaintext_is_sent_by_an_interceptor(token_target: str) -> None:
    with MaestroClient(token_target, token=TOKEN) as client:
        assert client.status().host.memory_total_bytes > 0
        lease = client.allocate("python-test", cpu_memory_bytes=1_000_000, ttl_seconds=60)
        client.release(lease.lease_id)
        assert next(iter(client.watch_snapshots(interval_ms=100))).sequence > 0, "streams carry it too"
    with MaestroClient(f"http://{token_target}", token=TOKEN) as client:
        client.status()


def test_a_missing_or_wrong_token_is_not_allowed(token_target: str) -> None:
    for token in (None, "wrong-secret"):
        with MaestroClient(token_target, token=token) as client:
            with pytest.raises(NotAllowed) as refused:
                client.status()
            assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert exit_code(refused.value) == 7, "the CLI's code for refused credentials"
            assert "wrong-secret" not in str(refused.value)
    assert "wrong-secret" not in repr(BearerToken("wrong-secret"))


def test_a_channel_passed_in_gets_the_token_too(token_target: str) -> None:
    with MaestroClient(channel=grpc.insecure_channel(token_target), token=TOKEN) as client:
        client.status()
    with pytest.raises(ValueError):
        MaestroClient(channel=grpc.insecure_channel(token_target), root_certificates=b"pem")


def test_tls_with_a_private_ca_and_a_token(tls_target: str, pki) -> None:
    with MaestroClient(tls_target, token=TOKEN, **tls_trust(pki)) as client:
        assert client.status().host.memory_total_bytes > 0
        client.release(client.allocate("python-tls", cpu_memory_bytes=1_000_000).lease_id)
    with MaestroClient(f"https://{tls_target}", token=TOKEN, **tls_trust(pki)) as client:
        client.status()
    with MaestroClient(tls_target, **tls_trust(pki)) as client, pytest.raises(NotAllowed):
        client.status()


def test_tls_needs_the_servers_ca_and_a_tls_channel(tls_target: str) -> None:
    # grpc's bundled roots do not know the private CA; a plaintext client gets no answer.
    for target in (f"https://{tls_target}", tls_target):
        with MaestroClient(target, token=TOKEN, timeout=5.0) as client, pytest.raises(ServerUnavailable):
            client.status()


def test_mutual_tls_needs_the_client_certificate(mtls_target: str, pki) -> None:
    with MaestroClient(mtls_target, token=TOKEN, **mtls_identity(pki)) as client:
        assert client.status().host.memory_total_bytes > 0
    with MaestroClient(mtls_target, token=TOKEN, timeout=5.0, **tls_trust(pki)) as client:
        with pytest.raises(ServerUnavailable):
            client.status()


def test_tls_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="together"):
        MaestroClient("localhost:1", private_key=b"key")
    with pytest.raises(ValueError, match="https://"):
        MaestroClient("http://localhost:1", root_certificates=b"pem")
