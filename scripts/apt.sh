# Sourced by the provisioning scripts: installs Debian packages once, quietly, as root or via sudo.

# Installs the Debian packages given (without their recommends); fails with a message where there
# is no apt-get.
apt_packages() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "there is no apt-get: install $* by hand" >&2
        exit 1
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    echo "installing Debian packages: $*" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
