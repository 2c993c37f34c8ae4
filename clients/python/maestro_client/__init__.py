"""Typed Python client of the Maestro gRPC service.

``MaestroClient`` wraps both services (``maestro.v1.ResourceService`` and
``maestro.v1.GenerationService``): it returns the generated protobuf messages, raises
``MaestroError`` subclasses that say which kind of failure happened, and writes generations to WAV,
FLAC, Ogg Opus or MP3 files (the path's suffix picks) as they stream in.
"""

from maestro_client.client import GenerationResult, MaestroClient, audio_input
from maestro_client.errors import (
    InvalidRequest,
    MaestroError,
    NotAllowed,
    NotImplementedByServer,
    ResourceRefused,
    ServerUnavailable,
)
from maestro_client.files import file_format
from maestro_client.wav import WavWriter

__all__ = [
    "GenerationResult",
    "InvalidRequest",
    "MaestroClient",
    "MaestroError",
    "NotAllowed",
    "NotImplementedByServer",
    "ResourceRefused",
    "ServerUnavailable",
    "WavWriter",
    "audio_input",
    "file_format",
]
