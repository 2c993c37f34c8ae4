"""Generates music from a prompt into a file, written as the audio streams in. The output's suffix
picks the format: .wav (or none; --format s16 or f32), .flac, .ogg or .opus (Ogg Opus), .mp3.

    python examples/generate_wav.py --model facebook/musicgen-small --prompt "lo-fi piano" -o out.wav
    python examples/generate_wav.py --model facebook/musicgen-small --prompt "lo-fi piano" -o out.flac
    python examples/generate_wav.py --model facebook/musicgen-small --continue loop.wav --duration 10 -o more.wav
    python examples/generate_wav.py --model facebook/musicgen-melody --prompt "string quartet" --melody hum.wav -o quartet.wav
    python examples/generate_wav.py --target https://maestro.internal:50051 --tls-ca ca.pem \
        --token-file token.txt --model facebook/musicgen-small --prompt "lo-fi piano" -o out.wav

Ctrl-C cancels the request on the server and keeps what arrived (a valid WAV; an encoded file
without its end).
"""

from __future__ import annotations

import argparse
import sys
import time

import connection
from maestro_client import MaestroError, file_format
from maestro_client.errors import exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate music into a WAV, FLAC, Ogg Opus or MP3 file.")
    connection.add_arguments(parser)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt", default="")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of audio")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--format", choices=["s16", "f32"], default="s16", help="samples of a .wav output")
    parser.add_argument("--continue", dest="clip", help="a WAV clip to continue (--duration is what follows it)")
    parser.add_argument("--melody", help="a WAV melody to follow (needs a melody checkpoint)")
    parser.add_argument("-o", "--output", required=True, help="the file; its suffix picks the format")
    args = parser.parse_args(argv)
    try:
        file_format(args.output, args.format)
    except ValueError as e:
        parser.error(str(e))
    options = {"seed": args.seed} if args.seed is not None else {}
    if args.clip:
        options["audio_prompt"] = args.clip
    if args.melody:
        options["melody"] = args.melody
    started = time.monotonic()

    def progress(chunk) -> None:
        print(f"\r{chunk.frames_done}/{chunk.frames_total} frames ({100 * chunk.progress:.0f} %), "
              f"{time.monotonic() - started:.1f} s", end="", file=sys.stderr, flush=True)

    with connection.connect(args, timeout=None) as client:
        try:
            result = client.generate_to_file(args.output, args.model, args.prompt, args.duration,
                                             format=args.format, on_progress=progress, **options)
        except MaestroError as e:
            print(f"generate_wav: {e}", file=sys.stderr)
            return exit_code(e)
    print(file=sys.stderr)
    if result.cancelled:
        print(f"interrupted: kept {result.seconds:.2f} s in {result.path}", file=sys.stderr)
        return 130
    s = result.summary
    if s is None:
        print(f"the stream ended without a summary; kept {result.seconds:.2f} s in {result.path}", file=sys.stderr)
        return 1
    print(f"wrote {result.path}: {result.seconds:.2f} s at {result.header.sample_rate} Hz; "
          f"generated in {s.total_ms / 1000:.1f} s on {s.device} (RTF {s.real_time_factor:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
