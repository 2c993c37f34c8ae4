#!/usr/bin/env bash
# A GPU host check: Maestro's NVML sampler against nvidia-smi, one command, a table printed.
#
#   scripts/gpu-check.sh build       on the development machine: builds the sampler without libtorch
#                                    (--no-default-features) into target/gpu-check/gpu_readings
#   scripts/gpu-check.sh             on a GPU host, which needs neither Rust nor libtorch: runs that
#                                    binary and nvidia-smi, compares every GPU's figures
#   scripts/gpu-check.sh self-test   the comparison on canned readings (part of make test)
#
# The binary is small and links no libtorch; NVML is loaded at run time from the driver.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${MAESTRO_GPU_READINGS:-$here/target/gpu-check/gpu_readings}
query=index,uuid,name,memory.total,memory.used,temperature.gpu,power.draw,utilization.gpu

case "${1:-check}" in
  build)
    cd "$here"
    cargo build --release --no-default-features --example gpu_readings
    mkdir -p target/gpu-check
    cp target/release/examples/gpu_readings target/gpu-check/gpu_readings
    echo "built $bin ($(du -h target/gpu-check/gpu_readings | cut -f1))"
    ;;
  check)
    [ -x "$bin" ] || { echo "gpu-check: no $bin (run 'scripts/gpu-check.sh build' where Rust is)" >&2; exit 2; }
    command -v nvidia-smi >/dev/null || { echo "gpu-check: nvidia-smi is not on PATH" >&2; exit 2; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$bin" > "$tmp/maestro.csv"
    nvidia-smi --query-gpu=$query --format=csv,noheader,nounits > "$tmp/smi.csv"
    python3 "$here/scripts/gpu_compare.py" "$tmp/maestro.csv" "$tmp/smi.csv"
    ;;
  self-test)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    header=index,uuid,name,memory_total_bytes,memory_used_bytes,temperature_celsius,power_watts,utilization_gpu_percent
    printf '%s\n0,GPU-aa,NVIDIA H200,150754820096,1073741824,41,118.5,0\n1,GPU-bb,NVIDIA H200,150754820096,2147483648,absent,120,3\n' \
      "$header" > "$tmp/maestro.csv"
    printf '0, GPU-aa, NVIDIA H200, 143771, 1024, 41, 118.20, 0\n1, GPU-bb, NVIDIA H200, 143771, 2048, [N/A], 121.0, 5\n' \
      > "$tmp/smi.csv"
    python3 "$here/scripts/gpu_compare.py" "$tmp/maestro.csv" "$tmp/smi.csv" > "$tmp/out" \
      || { cat "$tmp/out"; echo "gpu-check self-test: agreeing readings were refused" >&2; exit 1; }
    sed -i 's/^0, GPU-aa, NVIDIA H200, 143771, 1024, 41,/0, GPU-aa, NVIDIA H200, 143771, 1024, 60,/' "$tmp/smi.csv"
    if python3 "$here/scripts/gpu_compare.py" "$tmp/maestro.csv" "$tmp/smi.csv" > "$tmp/out"; then
      cat "$tmp/out"; echo "gpu-check self-test: a 19 °C difference passed" >&2; exit 1
    fi
    grep -q "temperature_c .*DIFFERS" "$tmp/out" || { cat "$tmp/out"; exit 1; }
    echo "gpu-check self-test: agreeing readings pass, a differing temperature fails"
    ;;
  *) echo "usage: $0 [build|check|self-test]" >&2; exit 2 ;;
esac
