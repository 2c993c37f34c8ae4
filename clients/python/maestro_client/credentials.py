"""The channel ``MaestroClient`` talks over, with its credentials.

A secure channel (any TLS argument, or an ``https://`` target) carries the token as call
credentials, which grpc attaches only to calls on a TLS channel. A plaintext channel gets the same
``authorization: Bearer <token>`` header from an interceptor instead: grpc refuses call credentials
there, and a token over plaintext is still what a loopback server or a TLS-terminating sidecar wants.
"""

from __future__ import annotations

import collections
from typing import Optional, Sequence

import grpc

Options = Sequence[tuple[str, object]]


def channel(target: str, options: Options, *, token: Optional[str] = None,
            root_certificates: Optional[bytes] = None, private_key: Optional[bytes] = None,
            certificate_chain: Optional[bytes] = None) -> grpc.Channel:
    """A channel to ``target`` (``host:port``, ``http://…`` for plaintext, ``https://…`` for TLS).

    With TLS, ``root_certificates`` is the PEM CA to trust (default: grpc's bundled roots) and
    ``private_key`` with ``certificate_chain`` the client identity for mutual TLS."""
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("private_key and certificate_chain go together (the client identity for mutual TLS)")
    has_pem = any(pem is not None for pem in (root_certificates, private_key, certificate_chain))
    if has_pem and target.startswith("http://"):
        raise ValueError(f"TLS arguments need an https:// or bare host:port target, not {target}")
    secure = has_pem or target.startswith("https://")
    address = target.removeprefix("https://").removeprefix("http://")
    if not secure:
        return with_token(grpc.insecure_channel(address, options=options), token)
    credentials = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
    if token is not None:
        credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(address, credentials, options=options)


def with_token(chan: grpc.Channel, token: Optional[str]) -> grpc.Channel:
    """``chan`` adding ``authorization: Bearer <token>`` to every call (``chan`` itself without a token)."""
    return chan if token is None else grpc.intercept_channel(chan, BearerToken(token))


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                   "wait_for_ready", "compression")),
               grpc.ClientCallDetails):
    """A call's details with metadata replaced (grpc's own class cannot be built directly)."""


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call, for channels without call credentials."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def __repr__(self) -> str:
        return "BearerToken(<hidden>)"

    def _details(self, details: grpc.ClientCallDetails) -> _Details:
        metadata = [m for m in (details.metadata or ()) if m[0] != "authorization"]
        return _Details(details.method, details.timeout, [*metadata, self._header], details.credentials,
                        details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)
