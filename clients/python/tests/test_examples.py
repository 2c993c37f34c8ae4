"""The two examples run against the real server as a user would run them, with credentials too."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

from conftest import TOKEN

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env_path = str(EXAMPLES.parent)
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})


def write_wav(path: Path, frames: bytes) -> None:
    """A mono 16-bit WAV at the tiny models' 32 kHz."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(32_000)
        w.writeframes(frames)


def test_stream_snapshots_prints_one_line_per_snapshot(target: str) -> None:
    done = run("stream_snapshots.py", "--target", target, "--count", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("#") and " GB (" in line for line in lines), lines


def test_a_gpu_sensor_that_did_not_answer_prints_n_a_not_zero() -> None:
    sys.path.insert(0, str(EXAMPLES))
    from stream_snapshots import line
    from maestro.v1 import resources_pb2 as pb

    snapshot = pb.Snapshot(sequence=7)
    snapshot.gpu.devices.add(index=0, memory_used_bytes=40_000_000_000, memory_total_bytes=80_000_000_000,
                             memory_used_percent=50.0, utilization_gpu_percent=30.0)
    text = line(snapshot)
    assert text.endswith("gpu0 40.00 GB (50.0 %) 30 % n/a °C"), text
    snapshot.gpu.devices[0].temperature_celsius = 0.0
    assert line(snapshot).endswith("30 % 0 °C"), "a read 0 is shown as 0"


def test_generate_wav_writes_a_playable_file(target: str, tmp_path) -> None:
    out = tmp_path / "out.wav"
    done = run("generate_wav.py", "--target", target, "--model", "musicgen-tiny", "--prompt", "drums",
               "--duration", "0.5", "--seed", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}: ") and "RTF" in done.stdout, done.stdout
    with wave.open(str(out)) as w:
        assert w.getnframes() > 0
        seconds = w.getnframes() / w.getframerate()
        assert abs(seconds - 0.5) < 0.1, f"asked for 0.5 s, got {seconds} s"


def test_generate_wav_writes_the_format_the_suffix_names(target: str, tmp_path) -> None:
    out = tmp_path / "out.flac"
    done = run("generate_wav.py", "--target", target, "--model", "musicgen-tiny", "--prompt", "drums",
               "--duration", "0.3", "--seed", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}: 0.30 s ") and out.read_bytes()[:4] == b"fLaC", done.stdout
    done = run("generate_wav.py", "--target", target, "--model", "musicgen-tiny", "--format", "f32",
               "-o", str(tmp_path / "out.mp3"))
    assert done.returncode == 2 and "needs a .wav path" in done.stderr, done.stderr


def test_generate_wav_follows_a_melody(target: str, tmp_path) -> None:
    hum, out = tmp_path / "hum.wav", tmp_path / "quartet.wav"
    square = (8000 * ((i // 40) % 2 * 2 - 1) for i in range(16_000))
    write_wav(hum, b"".join(v.to_bytes(2, "little", signed=True) for v in square))
    done = run("generate_wav.py", "--target", target, "--model", "musicgen-melody-tiny", "--prompt", "calm piano",
               "--melody", str(hum), "--duration", "0.3", "--seed", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    with wave.open(str(out)) as w:
        assert abs(w.getnframes() / w.getframerate() - 0.3) < 0.05


def test_generate_wav_continues_a_clip(target: str, tmp_path) -> None:
    clip, out = tmp_path / "clip.wav", tmp_path / "more.wav"
    write_wav(clip, bytes(2 * 8000))
    done = run("generate_wav.py", "--target", target, "--model", "musicgen-tiny", "--continue", str(clip),
               "--duration", "0.3", "--seed", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    with wave.open(str(out)) as w:
        assert abs(w.getnframes() / w.getframerate() - 0.3) < 0.05


def test_the_examples_take_a_token_and_tls_files(tls_target: str, mtls_target: str, pki, tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    ca = ["--tls-ca", str(pki.path("ca.pem"))]
    done = run("stream_snapshots.py", "--target", tls_target, *ca, "--token", TOKEN, "--count", "1")
    assert done.returncode == 0, done.stderr
    done = run("stream_snapshots.py", "--target", tls_target, *ca, "--count", "1")
    assert done.returncode == 7 and "UNAUTHENTICATED" in done.stderr, done.stderr
    out = tmp_path / "out.wav"
    identity = ["--tls-cert", str(pki.path("client.pem")), "--tls-key", str(pki.path("client.key"))]
    done = run("generate_wav.py", "--target", mtls_target, *ca, *identity, "--token-file", str(token_file),
               "--model", "musicgen-tiny", "--prompt", "drums", "--duration", "0.3", "--seed", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
