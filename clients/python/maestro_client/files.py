"""Which file a generation is written to, picked by the path's suffix, and the two ways of writing
it as chunks arrive: a WAV written here from raw PCM (valid after every chunk), or a file the server
encoded (FLAC, Ogg Opus, MP3), whose chunks' bytes are appended as they come. The server sends whole
encoder frames or pages and, after the audio, a last chunk with what the encoder flushed, so the
chunks in order are the whole file; one cut short keeps every frame that arrived."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from maestro_client.wav import WavWriter

PCM_FORMATS = ("s16", "f32")
SUFFIXES = {".wav": "wav", ".flac": "flac", ".ogg": "opus", ".opus": "opus", ".mp3": "mp3"}


def file_format(path: str | Path, format: str = "s16") -> str:
    """The ``generate`` format that writes ``path``: ``format`` (``s16`` or ``f32``, the samples of a
    WAV written here) for ``.wav`` or no suffix, else ``flac``, ``opus`` (``.ogg``, ``.opus``) or
    ``mp3``. Another suffix, or ``f32`` outside a WAV, raises ``ValueError``."""
    if format not in PCM_FORMATS:
        raise ValueError(f"format must be one of {', '.join(PCM_FORMATS)} (the suffix picks the file), not {format!r}")
    suffix = Path(path).suffix.lower()
    if suffix in ("", ".wav"):
        return format
    if suffix not in SUFFIXES:
        raise ValueError(f"cannot write a {suffix} file ({path}): the suffix picks the format, one of "
                         f"{', '.join(SUFFIXES)}")
    if format != "s16":
        raise ValueError(f"format={format!r} needs a .wav path; a {suffix} file has its own encoding")
    return SUFFIXES[suffix]


class PcmFile:
    """A WAV written from raw PCM chunks, its header kept current."""

    def __init__(self, path: str | Path, sample_rate: int, channels: int, floating: bool) -> None:
        self._writer = WavWriter(path, sample_rate, channels, 4 if floating else 2, floating)

    @property
    def frames(self) -> int:
        """Samples per channel written so far."""
        return self._writer.frames

    def write(self, data: bytes, sample_offset: int) -> None:
        """Appends one chunk of PCM (its whole length is known, so the offset is not needed)."""
        self._writer.write(data)

    def close(self) -> None:
        """Closes the file."""
        self._writer.close()


class EncodedFile:
    """A file the server encoded, appended to chunk by chunk. Encoded bytes do not say how many
    samples they hold, so ``frames`` is the latest chunk's offset: the whole length once the last
    chunk (whose offset is the total) has arrived."""

    def __init__(self, path: str | Path) -> None:
        self._file: BinaryIO = open(path, "wb")
        self.frames = 0

    def write(self, data: bytes, sample_offset: int) -> None:
        """Appends one chunk's bytes and flushes them, so the file on disk has every chunk received."""
        self._file.write(data)
        self._file.flush()
        self.frames = sample_offset

    def close(self) -> None:
        """Closes the file."""
        if not self._file.closed:
            self._file.close()
