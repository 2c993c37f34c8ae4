#!/usr/bin/env bash
# Provisions the cached Python venv that carries libtorch (PyPI torch) and the fixture tools.
# Idempotent: a second run checks the stamp and installs nothing.
# Prints the venv directory on stdout; everything else goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${MAESTRO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maestro}
venv="$cache/venv"
req="$here/scripts/requirements.txt"
stamp="$venv/.maestro-stamp"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"
  exit 0
fi
mkdir -p "$cache"
# One provisioning at a time: parallel make jobs or sessions must not race on the venv.
exec 9>"$cache/.lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"
  exit 0
fi
echo "maestro: provisioning $venv (torch from PyPI, a few GB, once)" >&2
[ -x "$venv/bin/python3" ] || python3 -m venv "$venv" >&2
"$venv/bin/python3" -m pip install --quiet --upgrade pip >&2
"$venv/bin/python3" -m pip install --quiet -r "$req" >&2
echo "$want" > "$stamp"
echo "$venv"
