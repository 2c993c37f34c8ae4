"""Streams resource snapshots from a Maestro server to the console, one line each.

    python examples/stream_snapshots.py --target 127.0.0.1:50051 --count 10
    MAESTRO_TOKEN=… python examples/stream_snapshots.py --target 127.0.0.1:50051 --count 10
    python examples/stream_snapshots.py --target maestro.internal:50051 --tls-ca ca.pem \
        --tls-cert me.pem --tls-key me.key --token-file token.txt
"""

from __future__ import annotations

import argparse
import sys

import connection
from maestro_client import MaestroError
from maestro_client.errors import exit_code

GB = 1e9


def figure(message, field: str, fmt: str) -> str:
    """``message.field`` formatted, or ``n/a`` when the server could not read that sensor."""
    return format(getattr(message, field), fmt) if message.HasField(field) else "n/a"


def line(snapshot) -> str:
    """One line: sequence, health, effective memory, CPU and each GPU (``n/a`` for a sensor that
    did not answer)."""
    mem = snapshot.effective_memory
    health = snapshot.DESCRIPTOR.fields_by_name["health"].enum_type.values_by_number[snapshot.health].name
    text = (f"#{snapshot.sequence:<6} {health.removeprefix('HEALTH_LEVEL_'):<8} "
            f"mem {mem.used_bytes / GB:.2f} / {mem.limit_bytes / GB:.2f} GB ({mem.used_percent:.1f} %)  "
            f"cpu {snapshot.host.cpu_percent:.1f} %")
    for gpu in snapshot.gpu.devices:
        used = f"{gpu.memory_used_bytes / GB:.2f} GB" if gpu.HasField("memory_used_bytes") else "n/a"
        percent = figure(gpu, "memory_used_percent", ".1f")
        busy = figure(gpu, "utilization_gpu_percent", ".0f")
        temperature = figure(gpu, "temperature_celsius", ".0f")
        text += f"  gpu{gpu.index} {used} ({percent} %) {busy} % {temperature} °C"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stream Maestro snapshots to the console.")
    connection.add_arguments(parser)
    parser.add_argument("--interval-ms", type=int, default=0, help="0 = the server's sample interval")
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0 = until Ctrl-C)")
    args = parser.parse_args(argv)
    with connection.connect(args) as client:
        try:
            for seen, snapshot in enumerate(client.watch_snapshots(args.interval_ms), start=1):
                print(line(snapshot), flush=True)
                if args.count and seen >= args.count:
                    break
        except MaestroError as e:
            print(f"stream_snapshots: {e}", file=sys.stderr)
            return exit_code(e)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
