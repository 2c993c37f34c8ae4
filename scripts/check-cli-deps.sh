#!/usr/bin/env bash
# Fails when the `maestro` CLI's normal (non-dev) dependency tree holds a crate that only the server
# needs: libtorch bindings, NVML or the system sampler. Lists the offending crates and the path that
# brings each one in.
set -euo pipefail
cd "$(dirname "$0")/.."
server_only=(tch torch-sys nvml-wrapper sysinfo)
tree=$(cargo tree -p maestro-cli -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
found=()
for crate in "${server_only[@]}"; do
  if grep -qx "$crate" <<<"$tree"; then
    found+=("$crate")
  fi
done
if [ ${#found[@]} -gt 0 ]; then
  echo "check-cli-deps: maestro-cli depends on server-only crates: ${found[*]}" >&2
  for crate in "${found[@]}"; do
    echo "--- how $crate gets in:" >&2
    cargo tree -p maestro-cli -e normal -i "$crate" --depth 8 >&2 || true
  done
  exit 1
fi
echo "check-cli-deps: maestro-cli has none of ${server_only[*]}"
