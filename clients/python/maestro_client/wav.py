"""A WAV file written progressively: the RIFF and data sizes are rewritten after every chunk, so the
file is a valid WAV of everything received so far even if the program stops midway. Supports 16-bit
integer PCM and 32-bit float PCM (which the standard ``wave`` module cannot write)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_PCM = 1
_IEEE_FLOAT = 3
_HEADER_BYTES = 44


class WavWriter:
    """Appends interleaved little-endian PCM to a WAV file, keeping its header current."""

    def __init__(self, path: str | Path, sample_rate: int, channels: int, sample_width: int, floating: bool = False):
        if channels < 1 or sample_width not in (2, 4) or (floating and sample_width != 4):
            raise ValueError(f"unsupported WAV layout: {channels} channels, {sample_width}-byte samples")
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.sample_width = sample_width
        self.floating = floating
        self.data_bytes = 0
        self._file: BinaryIO = open(self.path, "wb")
        self._write_header()

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (one sample of every channel)."""
        return self.sample_width * self.channels

    @property
    def frames(self) -> int:
        """Samples per channel written so far."""
        return self.data_bytes // self.frame_bytes

    def write(self, data: bytes) -> None:
        """Appends whole frames of PCM and updates the header on disk."""
        if len(data) % self.frame_bytes:
            raise ValueError(f"{len(data)} bytes are not whole frames of {self.frame_bytes} bytes")
        self._file.seek(_HEADER_BYTES + self.data_bytes)
        self._file.write(data)
        self.data_bytes += len(data)
        self._write_header()

    def close(self) -> None:
        """Closes the file (its header is already final)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "WavWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_header(self) -> None:
        tag = _IEEE_FLOAT if self.floating else _PCM
        byte_rate = self.sample_rate * self.frame_bytes
        header = b"RIFF" + struct.pack("<I", 36 + self.data_bytes) + b"WAVE"
        header += b"fmt " + struct.pack(
            "<IHHIIHH", 16, tag, self.channels, self.sample_rate, byte_rate, self.frame_bytes, 8 * self.sample_width
        )
        header += b"data" + struct.pack("<I", self.data_bytes)
        self._file.seek(0)
        self._file.write(header)
        self._file.flush()
