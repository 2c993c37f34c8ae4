#!/usr/bin/env bash
# Installs the Node.js examples' packages (clients/node/package-lock.json, exactly) into the cache and
# links clients/node/node_modules to them, once per lock file: a second run checks the stamp and
# installs nothing. Needs the machine's node (18.3 or later) and npm.
# Prints the cached node_modules directory on stdout; everything else goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${MAESTRO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/maestro}
project="$here/clients/node"
lock="$project/package-lock.json"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "provision-node.sh: $tool is not on PATH; the Node.js examples need Node.js 18.3 or later with npm" >&2
    exit 1
  fi
done
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 3) ? 0 : 1)'; then
  echo "provision-node.sh: node $(node --version) is too old; the Node.js examples need 18.3 or later" >&2
  exit 1
fi

want=$(sha256sum "$lock" | cut -d' ' -f1)
dir="$cache/node/$want"
stamp="$dir/.maestro-stamp"
link="$project/node_modules"

# Points clients/node/node_modules at the cached install (replacing a link to another lock's).
link_modules() {
  if [ "$(readlink "$link" 2>/dev/null)" != "$dir/node_modules" ]; then
    if [ -e "$link" ] && [ ! -L "$link" ]; then
      echo "provision-node.sh: $link is a directory of its own (npm ci run there?); remove it to use the cache" >&2
      exit 1
    fi
    ln -sfn "$dir/node_modules" "$link.tmp$$"
    mv -T "$link.tmp$$" "$link"
  fi
  echo "$dir/node_modules"
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  link_modules
  exit 0
fi
mkdir -p "$cache/node"
# One provisioning at a time: parallel tests or sessions must not race on the install or the link.
exec 9>"$cache/node/.lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  link_modules
  exit 0
fi
echo "maestro: provisioning $dir (npm ci of clients/node/package-lock.json, once)" >&2
rm -rf "$dir"
mkdir -p "$dir"
cp "$project/package.json" "$lock" "$dir/"
# The lock file pins every package with its integrity hash; no package runs an install script.
(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
echo "$want" > "$stamp"
link_modules
