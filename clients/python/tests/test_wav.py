"""The progressive WAV writer: valid after every chunk, for integer and float PCM."""

from __future__ import annotations

import struct
import wave

import pytest

from maestro_client import WavWriter


def test_the_header_is_current_after_every_chunk(tmp_path) -> None:
    path = tmp_path / "a.wav"
    with WavWriter(path, 32000, 1, 2) as w:
        w.write(struct.pack("<100h", *range(100)))
        with wave.open(str(path)) as r:
            assert (r.getnframes(), r.getframerate(), r.getsampwidth()) == (100, 32000, 2)
        w.write(struct.pack("<50h", *range(50)))
    with wave.open(str(path)) as r:
        assert r.getnframes() == 150


def test_float_wavs_declare_ieee_float(tmp_path) -> None:
    path = tmp_path / "f.wav"
    with WavWriter(path, 16000, 2, 4, floating=True) as w:
        w.write(struct.pack("<4f", 0.5, -0.5, 0.25, -0.25))
        assert w.frames == 2
    data = path.read_bytes()
    tag, channels, rate = struct.unpack("<HHI", data[20:28])
    assert (tag, channels, rate) == (3, 2, 16000)
    assert struct.unpack("<I", data[40:44])[0] == 16
    assert struct.unpack("<4f", data[44:]) == (0.5, -0.5, 0.25, -0.25)


def test_partial_frames_are_refused(tmp_path) -> None:
    with WavWriter(tmp_path / "p.wav", 16000, 2, 2) as w:
        with pytest.raises(ValueError):
            w.write(b"\x00\x00")
