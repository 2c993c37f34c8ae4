# Source this to build by hand exactly as the Makefile does:  source scripts/env.sh
# First the system libraries the build links (libopus): scripts/provision-build.sh, silent once done.
"$(dirname "${BASH_SOURCE[0]}")/provision-build.sh" || return 1
# With LIBTORCH set, tch uses that libtorch; otherwise the cached venv's PyTorch (provisioned on demand).
# Every cargo call must see the same variables, or torch-sys rebuilds.
if [ -z "${LIBTORCH:-}" ]; then
  MAESTRO_VENV=$("$(dirname "${BASH_SOURCE[0]}")/provision-torch.sh") || return 1
  export MAESTRO_VENV
  export PATH="$MAESTRO_VENV/bin:$PATH"
  export LIBTORCH_USE_PYTORCH=1
fi
