#!/usr/bin/env bash
# Installs the external tools the tests check the server's output with, once: a tool already on PATH
# is left alone, so a second run does nothing.
#   promtool  (Debian's `prometheus` package): lints the /metrics exposition in tests/http.rs.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "promtool is not on PATH and there is no apt-get to install it: install Prometheus's promtool" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing promtool (Debian package prometheus)" >&2
$sudo apt-get update -qq
# Recommends would pull in node-exporter; promtool needs only the package itself.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null
