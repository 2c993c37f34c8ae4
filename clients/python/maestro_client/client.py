"""``MaestroClient``: a thin typed wrapper over the generated stubs of both Maestro services.

Every method returns the server's protobuf message (or a list of them) and raises a
``MaestroError`` subclass on failure. Streams are generators: leaving the loop (``break``, an
exception, garbage collection) cancels the call on the server.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, TypeVar, Union

import grpc

from maestro_client import credentials
from maestro_client.errors import MaestroError, from_rpc_error
from maestro_client.files import PCM_FORMATS, EncodedFile, PcmFile, file_format

try:
    from maestro.v1 import generation_pb2 as gen
    from maestro.v1 import generation_pb2_grpc as gen_grpc
    from maestro.v1 import resources_pb2 as res
    from maestro.v1 import resources_pb2_grpc as res_grpc
except ImportError as e:  # pragma: no cover - exercised only before code generation
    raise ImportError(
        "the maestro.v1 stubs are missing: run `python maestro_client/codegen.py` in clients/python"
    ) from e

T = TypeVar("T")
DEFAULT_TARGET = "127.0.0.1:50051"
FORMATS = {"s16": gen.AUDIO_FORMAT_PCM_S16LE, "f32": gen.AUDIO_FORMAT_PCM_F32LE, "wav": gen.AUDIO_FORMAT_WAV,
           "flac": gen.AUDIO_FORMAT_FLAC, "opus": gen.AUDIO_FORMAT_OGG_OPUS, "mp3": gen.AUDIO_FORMAT_MP3}
SEVERITIES = {"info": res.SEVERITY_INFO, "warning": res.SEVERITY_WARNING, "critical": res.SEVERITY_CRITICAL}


@dataclass
class GenerationResult:
    """What ``generate_to_wav`` or ``generate_to_file`` wrote: the header and summary as the server
    sent them, and ``frames``, the samples per channel in the file (for an encoded file, those its
    chunks' offsets account for: all of them once the stream ended normally)."""

    path: Path
    header: "gen.Header"
    summary: Optional["gen.Summary"]
    frames: int
    cancelled: bool = False

    @property
    def seconds(self) -> float:
        """Seconds of audio in the file."""
        return self.frames / max(self.header.sample_rate, 1)


class MaestroClient:
    """Client of one Maestro server. Use as a context manager, or call ``close()``.

    ``target`` is ``host:port`` or ``http://host:port`` (plaintext) or ``https://host:port`` (TLS).
    ``token`` is sent as ``authorization: Bearer <token>`` on every call. Any of
    ``root_certificates`` (PEM CA bytes; default grpc's bundled roots), ``private_key`` and
    ``certificate_chain`` (PEM bytes, both or neither: the identity for mutual TLS) makes the channel
    TLS, as ``grpc.ssl_channel_credentials`` takes them. ``channel`` is a channel made elsewhere:
    the token is then added by an interceptor, and TLS is that channel's own business.
    """

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: Optional[float] = 30.0,
                 channel: Optional[grpc.Channel] = None, token: Optional[str] = None,
                 root_certificates: Optional[bytes] = None, private_key: Optional[bytes] = None,
                 certificate_chain: Optional[bytes] = None) -> None:
        tls = {"root_certificates": root_certificates, "private_key": private_key,
               "certificate_chain": certificate_chain}
        if channel is not None:
            if any(pem is not None for pem in tls.values()):
                raise ValueError("with channel=, TLS is set on that channel: pass no TLS arguments")
            self._channel = credentials.with_token(channel, token)
        else:
            options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
            self._channel = credentials.channel(target, options, token=token, **tls)
        self._timeout = timeout
        self.resources = res_grpc.ResourceServiceStub(self._channel)
        self.generation = gen_grpc.GenerationServiceStub(self._channel)

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> "MaestroClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel connects, or raises ``ServerUnavailable``."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise from_rpc_error(_Failed(grpc.StatusCode.UNAVAILABLE, f"not ready within {timeout} s")) from None

    def _call(self, method: Callable[..., T], request: object) -> T:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def _stream(self, method: Callable[..., Iterator[T]], request: object) -> Iterator[T]:
        call = method(request)
        try:
            yield from call
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise from_rpc_error(e) from None
        finally:
            call.cancel()

    # Telemetry.

    def status(self) -> "res.Snapshot":
        """The latest snapshot."""
        return self._call(self.resources.GetStatus, res.StatusRequest())

    def report(self) -> "res.ResourceReport":
        """Snapshot, window statistics, leases, cached models, active alerts and suggestions."""
        return self._call(self.resources.GetReport, res.ReportRequest())

    def history(self, window_seconds: int = 60) -> "res.History":
        """The samples of the last ``window_seconds`` with per-metric statistics."""
        return self._call(self.resources.GetHistory, res.HistoryRequest(window_seconds=window_seconds))

    def alerts(self, min_severity: str = "info", active_only: bool = False, limit: int = 0) -> list["res.Alert"]:
        """The alert log, ``min_severity`` being ``info``, ``warning`` or ``critical``."""
        req = res.ListAlertsRequest(min_severity=SEVERITIES[min_severity], active_only=active_only, limit=limit)
        return list(self._call(self.resources.ListAlerts, req).alerts)

    def watch_snapshots(self, interval_ms: int = 0) -> Iterator["res.Snapshot"]:
        """Snapshots as they are sampled (0 = the server's interval) until the loop ends."""
        return self._stream(self.resources.WatchSnapshots, res.WatchSnapshotsRequest(interval_ms=interval_ms))

    def watch_alerts(self, min_severity: str = "info") -> Iterator["res.AlertEvent"]:
        """Active alerts first, then raised and resolved events, until the loop ends."""
        req = res.WatchAlertsRequest(min_severity=SEVERITIES[min_severity])
        return self._stream(self.resources.WatchAlerts, req)

    # Validation, leases and advice.

    def validate(self, model: str, batch_size: int = 1, duration_s: float = 10.0, device: str = "auto",
                 dtype: str = "") -> "res.ValidationResult":
        """Whether ``model`` fits, with the numbers behind the verdict."""
        req = res.ValidateRequest(model=model, batch_size=batch_size, duration_s=duration_s, device=device, dtype=dtype)
        return self._call(self.resources.ValidateModel, req)

    def allocate(self, owner: str, cpu_memory_bytes: int = 0, gpu_memory_bytes: int = 0,
                 gpu_index: Optional[int] = None, ttl_seconds: int = 300) -> "res.Lease":
        """Reserves memory until ``release`` or the TTL."""
        req = res.AllocateRequest(owner=owner, cpu_memory_bytes=cpu_memory_bytes, gpu_memory_bytes=gpu_memory_bytes,
                                  ttl_seconds=ttl_seconds)
        if gpu_index is not None:
            req.gpu_index = gpu_index
        return self._call(self.resources.Allocate, req)

    def release(self, lease_id: str) -> "res.Lease":
        """Gives a lease back; returns it as it was."""
        return self._call(self.resources.Release, res.ReleaseRequest(lease_id=lease_id)).lease

    def cleanup(self, force: bool = False, dry_run: bool = False) -> "res.CleanupResult":
        """Releases expired leases, evicts idle models, returns memory to the OS."""
        return self._call(self.resources.Cleanup, res.CleanupRequest(force=force, dry_run=dry_run))

    def suggestions(self) -> "res.Suggestions":
        """Optimisation suggestions from the current state."""
        return self._call(self.resources.GetOptimizationSuggestions, res.SuggestionsRequest())

    def optimal_batch_size(self, model: str, duration_s: float = 10.0, gpu_memory_bytes: int = 0,
                           device: str = "auto", dtype: str = "") -> "res.BatchSizeAdvice":
        """The largest batch whose working set fits."""
        req = res.BatchSizeRequest(model=model, duration_s=duration_s, gpu_memory_bytes=gpu_memory_bytes,
                                   device=device, dtype=dtype)
        return self._call(self.resources.GetOptimalBatchSize, req)

    # Models and generation.

    def models(self) -> list["gen.ModelInfo"]:
        """Every model the server knows."""
        return list(self._call(self.generation.ListModels, gen.ListModelsRequest()).models)

    def load_model(self, model: str, device: str = "auto", dtype: str = "", pin: bool = False) -> "gen.ModelInfo":
        """Loads ``model`` into the server's cache."""
        req = gen.LoadModelRequest(model=model, device=device, dtype=dtype, pin=pin)
        return self._call(self.generation.LoadModel, req)

    def unload_model(self, model: str, force: bool = False) -> "gen.UnloadModelResponse":
        """Evicts ``model`` from the server's cache."""
        return self._call(self.generation.UnloadModel, gen.UnloadModelRequest(model=model, force=force))

    def generate(self, model: str, prompt: str = "", duration_s: float = 8.0, *, format: str = "s16",
                 chunk_ms: int = 0, greedy: bool = False, audio_prompt: "AudioLike" = None,
                 audio_rate: Optional[int] = None, include_prompt: bool = False,
                 melody: "AudioLike" = None, melody_rate: Optional[int] = None,
                 **sampling) -> Iterator["gen.GenerateResponse"]:
        """The raw stream: a header, audio chunks, a summary. ``format`` is ``s16`` or ``f32`` (raw
        PCM) or ``wav``, ``flac``, ``opus`` (Ogg Opus at 48 kHz) or ``mp3``: a file whose chunks'
        data, concatenated, is the whole file. ``sampling`` takes ``temperature``,
        ``top_k``, ``top_p``, ``guidance_scale``, ``seed``, ``negative_prompt`` and ``sampling_mode``.
        ``audio_prompt`` is a clip to continue: a WAV file's path, or samples (one float per frame,
        or a sequence of channels per frame) at ``audio_rate`` Hz; the server converts it to the
        model's rate and channels. ``duration_s`` is what follows it. ``melody`` (the same kinds, at
        ``melody_rate`` Hz) is a tune to follow; it needs a melody checkpoint
        (``facebook/musicgen-melody``)."""
        clip = audio_input(audio_prompt, audio_rate) if audio_prompt is not None else None
        tune = audio_input(melody, melody_rate) if melody is not None else None
        req = gen.GenerateRequest(model=model, prompt=prompt, duration_s=duration_s, format=FORMATS[format],
                                  chunk_ms=chunk_ms, greedy=greedy, audio_prompt=clip, melody=tune,
                                  include_prompt=include_prompt, **sampling)
        return self._stream(self.generation.Generate, req)

    def generate_to_wav(self, path: str | Path, model: str, prompt: str = "", duration_s: float = 8.0, *,
                        format: str = "s16", on_progress: Optional[Callable[["gen.AudioChunk"], None]] = None,
                        **options) -> GenerationResult:
        """Streams a generation into a WAV file written as chunks arrive. On ``KeyboardInterrupt``
        the request is cancelled and the file keeps what arrived (``cancelled`` is then true)."""
        stream = self.generate(model, prompt, duration_s, format=format, **options)
        return _write_stream(stream, Path(path), None, on_progress)

    def generate_to_file(self, path: str | Path, model: str, prompt: str = "", duration_s: float = 8.0, *,
                         format: str = "s16", on_progress: Optional[Callable[["gen.AudioChunk"], None]] = None,
                         **options) -> GenerationResult:
        """Streams a generation into a file whose suffix picks the format: ``.wav`` (or none) is a
        WAV written here as ``generate_to_wav`` does (``format`` ``s16`` or ``f32``), ``.flac``,
        ``.ogg`` / ``.opus`` and ``.mp3`` are encoded by the server and written as their chunks
        arrive. Another suffix, or ``f32`` outside a WAV, raises ``ValueError`` before any call. On
        ``KeyboardInterrupt`` the request is cancelled and the file keeps what arrived."""
        wire = file_format(path, format)
        stream = self.generate(model, prompt, duration_s, format=wire, **options)
        return _write_stream(stream, Path(path), None if wire in PCM_FORMATS else FORMATS[wire], on_progress)


def _write_stream(stream: Iterator["gen.GenerateResponse"], path: Path, encoded: Optional[int],
                  on_progress: Optional[Callable[["gen.AudioChunk"], None]]) -> GenerationResult:
    """Writes ``stream`` to ``path``: raw PCM as a WAV, or, when ``encoded`` names the format asked
    for, the encoded file's bytes as they come."""
    result: Optional[GenerationResult] = None
    sink: Union[PcmFile, EncodedFile, None] = None
    try:
        for message in stream:
            kind = message.WhichOneof("payload")
            if kind == "header":
                sink = _open_sink(path, message.header, encoded)
                result = GenerationResult(path, message.header, None, 0)
            elif kind == "chunk" and sink and result:
                sink.write(message.chunk.data, message.chunk.sample_offset)
                result.frames = sink.frames
                if on_progress:
                    on_progress(message.chunk)
            elif kind == "summary" and result:
                result.summary = message.summary
    except KeyboardInterrupt:
        if result is None:
            raise
        result.cancelled = True
    finally:
        stream.close()  # cancels the call if it is still running (Ctrl-C, a refused header)
        if sink:
            sink.close()
    if result is None:
        raise MaestroError(grpc.StatusCode.DATA_LOSS, "the stream ended before its header")
    return result


def _open_sink(path: Path, header: "gen.Header", encoded: Optional[int]) -> Union[PcmFile, EncodedFile]:
    """The writer for the stream ``header`` opens. A server that ignored the encoded format asked
    for would leave PCM under a ``.flac`` name, so that is refused."""
    if encoded is None:
        return PcmFile(path, header.sample_rate, header.channels, header.format == gen.AUDIO_FORMAT_PCM_F32LE)
    if header.format != encoded:
        sent, asked = gen.AudioFormat.Name(header.format), gen.AudioFormat.Name(encoded)
        raise MaestroError(grpc.StatusCode.DATA_LOSS, f"the server sent {sent}, not the {asked} asked for")
    return EncodedFile(path)


AudioLike = Union[str, Path, Sequence[float], Sequence[Sequence[float]], None]


def audio_input(audio: AudioLike, sample_rate: Optional[int] = None) -> "gen.AudioInput":
    """A clip for ``GenerateRequest.audio_prompt`` or ``melody``: a WAV file as it is (the server reads its header),
    or samples as 32-bit float PCM at ``sample_rate`` (frames of one float, or of one per channel;
    numpy arrays of shape ``(frames,)`` or ``(frames, channels)`` work too)."""
    if isinstance(audio, (str, Path)):
        return gen.AudioInput(data=Path(audio).read_bytes(), encoding=gen.AUDIO_ENCODING_WAV)
    if not sample_rate:
        raise ValueError("samples need their sample_rate")
    frames = [list(f) if hasattr(f, "__len__") else [f] for f in audio]
    channels = len(frames[0]) if frames else 1
    if any(len(f) != channels for f in frames):
        raise ValueError("every frame needs the same number of channels")
    flat = [float(v) for f in frames for v in f]
    return gen.AudioInput(data=struct.pack(f"<{len(flat)}f", *flat), encoding=gen.AUDIO_ENCODING_PCM_F32LE,
                          sample_rate=sample_rate, channels=channels)


class _Failed(grpc.RpcError):
    """A locally detected failure, shaped like a failed call."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

