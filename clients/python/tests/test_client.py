"""``MaestroClient`` against the real server: telemetry, streams, validation, leases, errors, and
cleanup, suggestions, the model cache and generation to WAV, FLAC and MP3 files with the tiny
fixture model (the encoded files decoded by ffmpeg, which ``scripts/provision-tools.sh`` installs)."""

from __future__ import annotations

import array
import itertools
import shutil
import subprocess
import wave

import grpc
import pytest

from maestro.v1 import generation_pb2 as gen
from maestro_client import (
    InvalidRequest,
    MaestroClient,
    ResourceRefused,
    ServerUnavailable,
)

TINY = "musicgen-tiny"


def test_status_reports_the_machine(client: MaestroClient) -> None:
    s = client.status()
    assert s.host.memory_total_bytes > 0
    assert s.effective_memory.limit_bytes > 0
    assert 1 <= s.health <= 4
    assert s.sampled_at.seconds > 0


def test_history_has_statistics(client: MaestroClient) -> None:
    h = client.history(window_seconds=5)
    assert h.window_seconds == 5
    assert any(m.metric == "host_memory_used_percent" for m in h.stats)


def test_alerts_list(client: MaestroClient) -> None:
    assert isinstance(client.alerts(min_severity="warning", active_only=True), list)


def test_watch_snapshots_streams_and_stops(client: MaestroClient) -> None:
    snapshots = list(itertools.islice(client.watch_snapshots(), 3))
    sequences = [s.sequence for s in snapshots]
    assert sequences == sorted(sequences) and len(set(sequences)) == 3


def test_validate_gives_a_verdict_with_checks(client: MaestroClient) -> None:
    v = client.validate("facebook/musicgen-small", duration_s=5.0, device="cpu")
    assert v.model == "facebook/musicgen-small" and v.device == "cpu"
    assert any(c.resource == "host_memory" for c in v.checks)
    assert v.requirements.weights_bytes > 0


def test_bad_input_and_unknown_models_raise_invalid_request(client: MaestroClient) -> None:
    with pytest.raises(InvalidRequest) as bad:
        client.validate("facebook/musicgen-small", batch_size=65)
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT and "batch_size" in bad.value.details
    with pytest.raises(InvalidRequest) as missing:
        client.validate("nobody/unknown-model")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND


def test_a_lease_is_granted_and_released(client: MaestroClient) -> None:
    lease = client.allocate("pytest", cpu_memory_bytes=1_000_000, ttl_seconds=60)
    assert lease.lease_id and lease.owner == "pytest"
    assert client.release(lease.lease_id).lease_id == lease.lease_id
    with pytest.raises(InvalidRequest):
        client.release(lease.lease_id)


def test_more_memory_than_exists_is_refused(client: MaestroClient) -> None:
    with pytest.raises(ResourceRefused) as refused:
        client.allocate("pytest", cpu_memory_bytes=10**16, ttl_seconds=60)
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_batch_advice(client: MaestroClient) -> None:
    advice = client.optimal_batch_size("facebook/musicgen-small", duration_s=5.0, gpu_memory_bytes=16 * 10**9)
    assert advice.memory_bytes == 16 * 10**9 and advice.reason


def test_an_unreachable_server_raises_server_unavailable() -> None:
    with MaestroClient("127.0.0.1:1", timeout=5.0) as c:
        with pytest.raises(ServerUnavailable):
            c.status()


def test_the_report_lists_a_lease(client: MaestroClient) -> None:
    lease = client.allocate("pytest-report", cpu_memory_bytes=1_000_000, ttl_seconds=60)
    try:
        report = client.report()
        assert 1 <= report.health <= 4
        assert report.snapshot.host.memory_total_bytes > 0 and report.window_seconds > 0
        listed = next(l for l in report.leases if l.lease_id == lease.lease_id)
        assert listed.owner == "pytest-report" and listed.cpu_memory_bytes == 1_000_000
    finally:
        client.release(lease.lease_id)


def test_models_include_the_fixture(client: MaestroClient) -> None:
    tiny = next(m for m in client.models() if m.model == TINY)
    assert tiny.weights_present


def test_a_loaded_f32_model_brings_a_half_precision_suggestion(client: MaestroClient) -> None:
    info = client.load_model(TINY, device="cpu")
    assert info.loaded and info.model == TINY
    s = client.suggestions()
    assert 1 <= s.health <= 4
    half = next(x for x in s.suggestions if x.kind == "use_half_precision" and x.resource == TINY)
    assert half.bytes_saved > 0 and "f16" in half.message


def test_a_forced_cleanup_lists_then_evicts_the_idle_model(client: MaestroClient) -> None:
    client.load_model(TINY, device="cpu")
    dry = client.cleanup(force=True, dry_run=True)
    assert dry.dry_run
    evict = next(a for a in dry.actions if a.kind == "evict_model")
    assert evict.target == TINY and evict.estimated_bytes > 0
    assert next(m for m in client.models() if m.model == TINY).loaded, "a dry run does nothing"
    done = client.cleanup(force=True)
    assert not done.dry_run
    assert {"evict_model", "malloc_trim"} <= {a.kind for a in done.actions}
    assert not next(m for m in client.models() if m.model == TINY).loaded


@pytest.mark.parametrize("fmt,width", [("s16", 2), ("f32", 4)])
def test_generate_to_wav_matches_the_summary(client: MaestroClient, tmp_path, fmt: str, width: int) -> None:
    path = tmp_path / f"{fmt}.wav"
    chunks = []
    result = client.generate_to_wav(path, TINY, "calm piano", 1.0, format=fmt, seed=7, chunk_ms=250,
                                    on_progress=chunks.append)
    assert result.summary is not None and not result.cancelled
    assert result.frames == result.summary.samples > 0
    assert chunks and chunks[-1].frames_done == chunks[-1].frames_total
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert len(data) - 44 == result.frames * result.header.channels * width
    if fmt == "s16":
        with wave.open(str(path)) as w:
            assert w.getnframes() == result.summary.samples
            assert w.getframerate() == result.header.sample_rate


def test_a_clip_is_continued_from_a_wav_path_or_samples(client: MaestroClient, tmp_path) -> None:
    import math
    rate = 16_000
    tone = [0.3 * math.sin(2 * math.pi * 330 * i / rate) for i in range(rate // 2)]
    clip = tmp_path / "clip.wav"
    with wave.open(str(clip), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(int(v * 32767).to_bytes(2, "little", signed=True) for v in tone))
    from_path = client.generate_to_wav(tmp_path / "a.wav", TINY, "calm piano", 0.4, seed=3, greedy=True,
                                       audio_prompt=clip)
    assert list(from_path.header.input_conversions) == ["resampled from 16000 Hz to 32000 Hz"]
    assert abs(from_path.header.prompt_s - 0.5) < 0.021
    assert from_path.frames == from_path.summary.samples == 20 * 640
    from_samples = client.generate_to_wav(tmp_path / "b.wav", TINY, "calm piano", 0.4, seed=3, greedy=True,
                                          audio_prompt=[[v, v] for v in tone], audio_rate=rate)
    assert "2 channels made 1" in from_samples.header.input_conversions
    with pytest.raises(ValueError):
        client.generate(TINY, audio_prompt=tone)


def test_a_melody_conditions_a_melody_checkpoint(client: MaestroClient, tmp_path) -> None:
    import math
    rate = 16_000
    tune = [0.3 * math.sin(2 * math.pi * 262 * i / rate) for i in range(rate // 2)]
    result = client.generate_to_wav(tmp_path / "m.wav", "musicgen-melody-tiny", "calm piano", 0.3, greedy=True,
                                    melody=tune, melody_rate=rate)
    assert list(result.header.input_conversions) == ["melody: resampled from 16000 Hz to 32000 Hz"]
    assert result.frames == result.summary.samples == 15 * 640
    plain = client.generate_to_wav(tmp_path / "p.wav", "musicgen-melody-tiny", "calm piano", 0.3, greedy=True)
    assert (tmp_path / "m.wav").read_bytes() != (tmp_path / "p.wav").read_bytes(), "the melody changed nothing"
    assert plain.frames == result.frames
    with pytest.raises(ResourceRefused) as refused:
        next(iter(client.generate(TINY, "calm piano", 0.3, melody=tune, melody_rate=rate)))
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "text-only" in refused.value.details


def ffmpeg(path, *args: str) -> bytes:
    """ffmpeg's decoding of ``path`` to mono raw samples, ``args`` naming their format (and rate)."""
    assert shutil.which("ffmpeg"), "ffmpeg must be on PATH (scripts/provision-tools.sh installs it)"
    done = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", *args, "-"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def test_generate_to_file_picks_the_format_by_suffix(client: MaestroClient, tmp_path) -> None:
    wav = client.generate_to_wav(tmp_path / "a.wav", TINY, "calm piano", 1.0, seed=7, chunk_ms=250)
    chunks = []
    flac = client.generate_to_file(tmp_path / "a.flac", TINY, "calm piano", 1.0, seed=7, chunk_ms=250,
                                   on_progress=chunks.append)
    assert flac.summary is not None and not flac.cancelled
    assert flac.frames == flac.summary.samples == wav.frames > 0, "the last chunk's offset is the total"
    assert [c.index for c in chunks] == list(range(len(chunks))) and chunks[-1].sample_offset == flac.frames
    assert (tmp_path / "a.flac").read_bytes()[:4] == b"fLaC"
    with wave.open(str(tmp_path / "a.wav")) as w:
        pcm = w.readframes(w.getnframes())
    assert ffmpeg(tmp_path / "a.flac", "-f", "s16le") == pcm, "FLAC holds exactly the WAV's samples"
    mp3 = client.generate_to_file(tmp_path / "a.MP3", TINY, "calm piano", 1.0, seed=7)
    assert mp3.frames == mp3.summary.samples
    seconds = len(array.array("f", ffmpeg(tmp_path / "a.MP3", "-ar", "48000", "-f", "f32le"))) / 48_000
    assert abs(seconds - 1.0) <= 0.1, f"asked for 1 s, the MP3 plays {seconds} s"
    plain = client.generate_to_file(tmp_path / "plain", TINY, "calm piano", 0.3, format="f32", seed=7)
    assert (tmp_path / "plain").read_bytes()[:4] == b"RIFF" and plain.frames == plain.summary.samples


def test_generate_to_file_refuses_what_it_cannot_write(client: MaestroClient, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\.aac.*\.wav, \.flac, \.ogg, \.opus, \.mp3"):
        client.generate_to_file(tmp_path / "a.aac", TINY, "calm piano", 0.3)
    with pytest.raises(ValueError, match="needs a .wav path"):
        client.generate_to_file(tmp_path / "a.ogg", TINY, "calm piano", 0.3, format="f32")
    assert not list(tmp_path.iterdir()), "no file and no call for a name it cannot write"


def test_generate_streams_a_file_format_whose_chunks_make_the_file(client: MaestroClient) -> None:
    messages = list(client.generate(TINY, "calm piano", 0.5, format="wav", seed=7))
    assert messages[0].header.format == gen.AUDIO_FORMAT_WAV
    data = b"".join(m.chunk.data for m in messages if m.WhichOneof("payload") == "chunk")
    assert data[:4] == b"RIFF" and len(data) == 44 + 2 * messages[-1].summary.samples
