#!/usr/bin/env python3
"""Compares Maestro's NVML readings with nvidia-smi's, one GPU a row, and prints the table.

    gpu_compare.py MAESTRO_CSV SMI_CSV

MAESTRO_CSV: what `gpu_readings` printed (header line, then one line per GPU; "absent" for a
sensor that could not be read). SMI_CSV: `nvidia-smi --query-gpu=index,uuid,name,memory.total,
memory.used,temperature.gpu,power.draw,utilization.gpu --format=csv,noheader,nounits`.
Exit status 0 when every figure agrees within its tolerance, 1 otherwise. The two programs sample
moments apart, so the moving figures (memory used, power, utilisation) get a tolerance; the fixed
ones (uuid, name, total memory) must match exactly.
"""
import csv
import sys

MIB = 1024 * 1024

# (column, nvidia-smi field index, Maestro's value -> nvidia-smi's unit, tolerance, what it means)
CHECKS = [
    ("uuid", 1, str, None),
    ("name", 2, str, None),
    ("memory_total_mib", 3, lambda b: int(b) // MIB, 0),
    ("memory_used_mib", 4, lambda b: int(b) // MIB, 256),
    ("temperature_c", 5, float, 3.0),
    ("power_w", 6, float, 0.25),
    ("utilization_gpu_percent", 7, float, 25.0),
]


def close(name, ours, theirs, tol):
    """Whether two readings agree: exact for text, absolute (or relative for power) otherwise."""
    if tol is None:
        return str(ours).strip() == str(theirs).strip()
    theirs = float(theirs)
    if name == "power_w":
        return abs(ours - theirs) <= max(5.0, tol * theirs)
    return abs(ours - theirs) <= tol


def main(maestro_csv, smi_csv):
    ours = {r["index"]: r for r in csv.DictReader(open(maestro_csv))}
    smi = {row[0].strip(): row for row in csv.reader(open(smi_csv)) if row}
    fields = {
        "memory_total_mib": "memory_total_bytes",
        "memory_used_mib": "memory_used_bytes",
        "temperature_c": "temperature_celsius",
        "power_w": "power_watts",
        "utilization_gpu_percent": "utilization_gpu_percent",
    }
    rows, ok = [], set(ours) == set(smi)
    if not ok:
        print(f"GPU indices differ: Maestro {sorted(ours)}, nvidia-smi {sorted(smi)}")
    for index in sorted(set(ours) & set(smi)):
        for name, col, unit, tol in CHECKS:
            raw = ours[index][fields.get(name, name)]
            theirs = smi[index][col].strip()
            if raw == "absent" or theirs in ("[N/A]", "[Not Supported]"):
                verdict = "absent on both" if raw == "absent" and theirs.startswith("[") else "ABSENT ON ONE"
                ok &= verdict == "absent on both"
                rows.append((index, name, raw, theirs, verdict))
                continue
            value = unit(raw)
            good = close(name, value, theirs, tol)
            ok &= good
            rows.append((index, name, value, theirs, "ok" if good else "DIFFERS"))
    widths = [max(len(str(r[i])) for r in rows + [("gpu", "figure", "maestro", "nvidia-smi", "")]) for i in range(5)]
    for r in [("gpu", "figure", "maestro", "nvidia-smi", "verdict")] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    print("gpu-check: " + ("every figure agrees" if ok else "some figures differ"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
