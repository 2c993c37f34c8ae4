#!/usr/bin/env bash
# Installs the ONNX Runtime anchor's venv (scripts/requirements-onnx.txt) once, under a stamp of the
# requirements' hash; a second run does nothing. Prints the venv's python on stdout; everything else
# goes to stderr. Only `make bench` needs it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${MAESTRO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maestro}
venv="$cache/onnx-venv"
req="$here/scripts/requirements-onnx.txt"
stamp="$venv/.maestro-stamp"
want=$(sha256sum "$req" | cut -d' ' -f1)
if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
    mkdir -p "$cache"
    exec 9>"$cache/.onnx-lock"
    flock 9
    if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
        echo "maestro: installing the ONNX Runtime anchor into $venv" >&2
        [ -x "$venv/bin/python3" ] || python3 -m venv "$venv" >&2
        "$venv/bin/python3" -m pip install --quiet --upgrade pip >&2
        "$venv/bin/python3" -m pip install --quiet -r "$req" >&2
        echo "$want" > "$stamp"
    fi
    exec 9>&-
fi
echo "$venv/bin/python3"
