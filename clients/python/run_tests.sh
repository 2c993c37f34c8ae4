#!/usr/bin/env bash
# Generates the maestro.v1 stubs from proto/ and runs the Python client's tests in the cached venv
# against the real server binary ($MAESTRO_SERVER_BIN, default target/debug/maestro-server).
# Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ -n "${MAESTRO_PYTHON:-}" ]; then
  python=$MAESTRO_PYTHON
else
  # The same cached venv as libtorch; its requirements pin grpcio, grpcio-tools and pytest.
  python="$("$root/scripts/provision-torch.sh")/bin/python3"
fi
export MAESTRO_SERVER_BIN=${MAESTRO_SERVER_BIN:-$root/target/debug/maestro-server}
if [ ! -x "$MAESTRO_SERVER_BIN" ]; then
  echo "run_tests.sh: no server binary at $MAESTRO_SERVER_BIN (cargo build --bin maestro-server)" >&2
  exit 1
fi
cd "$here"
"$python" maestro_client/codegen.py >/dev/null
exec "$python" -m pytest -q -p no:cacheprovider "$@"
