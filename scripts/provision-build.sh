#!/usr/bin/env bash
# Installs what compiling the crate needs beyond Rust and a C toolchain, once; a second run only
# checks and prints nothing. Sourced through scripts/env.sh, so every Makefile target that runs
# cargo has it.
#   libopus-dev, pkg-config: the `opus` crate (src/audio_out, Ogg Opus) links Debian's libopus,
#     found through pkg-config; without it the crate would try to build libopus with CMake.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists opus; then
    exit 0
fi
# shellcheck source=scripts/apt.sh
source "$here/apt.sh"
apt_packages pkg-config libopus-dev
pkg-config --exists opus
