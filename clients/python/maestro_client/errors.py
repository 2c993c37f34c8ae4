"""Errors raised by ``MaestroClient``: one class per kind of failure, the same split as the CLI's
exit codes, each carrying the gRPC status code and the server's message."""

from __future__ import annotations

import grpc


class MaestroError(Exception):
    """A call failed; ``code`` is the gRPC status code and ``details`` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class ServerUnavailable(MaestroError):
    """The server could not be reached or is not serving (UNAVAILABLE, DEADLINE_EXCEEDED)."""


class InvalidRequest(MaestroError):
    """The request was wrong: INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, ALREADY_EXISTS."""


class ResourceRefused(MaestroError):
    """The server refused for resources: RESOURCE_EXHAUSTED or FAILED_PRECONDITION (model in use)."""


class NotImplementedByServer(MaestroError):
    """The server does not implement this call (UNIMPLEMENTED)."""


class NotAllowed(MaestroError):
    """The server refused the credentials: UNAUTHENTICATED (no token, or one it does not accept) or
    PERMISSION_DENIED (the token's role does not allow the call)."""


_CLASSES = {
    grpc.StatusCode.UNAVAILABLE: ServerUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: ServerUnavailable,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.ALREADY_EXISTS: InvalidRequest,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceRefused,
    grpc.StatusCode.FAILED_PRECONDITION: ResourceRefused,
    grpc.StatusCode.UNIMPLEMENTED: NotImplementedByServer,
    grpc.StatusCode.UNAUTHENTICATED: NotAllowed,
    grpc.StatusCode.PERMISSION_DENIED: NotAllowed,
}


def from_rpc_error(error: grpc.RpcError) -> MaestroError:
    """The ``MaestroError`` subclass for a failed call."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return _CLASSES.get(code, MaestroError)(code, details or "")


_EXIT_CODES = {ServerUnavailable: 3, InvalidRequest: 4, ResourceRefused: 5, NotImplementedByServer: 6,
               NotAllowed: 7}


def exit_code(error: MaestroError) -> int:
    """The exit code the ``maestro`` CLI uses for this kind of failure (1 for any other)."""
    return _EXIT_CODES.get(type(error), 1)
