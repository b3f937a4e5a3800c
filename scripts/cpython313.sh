#!/usr/bin/env bash
# Builds CPython 3.13 from Debian trixie's source package into a fixed prefix, once.
# Prints the interpreter's path on stdout; a later run finds it there and builds nothing.
#
#   PY313=$(bash scripts/cpython313.sh)
#
# OXLOOP_CPYTHON313_PREFIX installs elsewhere, OXLOOP_CPYTHON313_CONFIGURE adds configure flags
# (scripts/refleak.sh builds a --with-pydebug interpreter this way) and OXLOOP_CPYTHON313_DOWNLOADS
# keeps the downloaded source package in that directory, so a second build fetches nothing.
#
# Only 3.11 is installed on these machines and Debian's registry serves no 3.13 binaries for
# bookworm, but it does serve trixie's source package. Everything the build needs (gcc, the
# -dev libraries for ssl, ctypes, sqlite, ...) is installed; the build takes ~4 minutes on 2 cores.
set -euo pipefail

VERSION=3.13.5
DEBIAN_VERSION=3.13.5-2+deb13u5
PREFIX=${OXLOOP_CPYTHON313_PREFIX:-/opt/oxloop-cpython-$VERSION}
PYTHON=$PREFIX/bin/python3.13
CONFIGURE_FLAGS=${OXLOOP_CPYTHON313_CONFIGURE:-}
CHECK=${OXLOOP_CPYTHON313_CHECK:-'import ssl, ctypes, test.test_asyncio'}

if "$PYTHON" -c "$CHECK" 2>/dev/null; then
    echo "$PYTHON"
    exit 0
fi

log() { echo "cpython313: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
downloads=${OXLOOP_CPYTHON313_DOWNLOADS:-$work}
mkdir -p "$downloads"

sources=/etc/apt/sources.list.d/oxloop-trixie-src.sources
if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/ ||
    ! grep -rqsx 'Suites: trixie' /etc/apt/sources.list.d/; then
    # The same mirror as the machine's own Debian entry.
    uri=$(awk '/^URIs:/ && /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources \
        2>/dev/null || true)
    log "adding deb-src trixie from ${uri:=http://deb.debian.org/debian}"
    as_root tee "$sources" >/dev/null <<EOF
Types: deb-src
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi
if [ ! -f "$downloads/python3.13_$VERSION.orig.tar.xz" ]; then
    log "fetching python3.13=$DEBIAN_VERSION"
    as_root apt-get update -q >&2
    (cd "$downloads" && apt-get source --download-only "python3.13=$DEBIAN_VERSION" >&2)
fi

log "building into $PREFIX"
tar -xf "$downloads/python3.13_$VERSION.orig.tar.xz" -C "$work"
cd "$work/Python-$VERSION"
# shellcheck disable=SC2086  # the extra flags are words on purpose
./configure --prefix="$PREFIX" --without-ensurepip $CONFIGURE_FLAGS >&2
make -j"$(nproc)" >&2
as_root make install >&2
"$PYTHON" -c "$CHECK"
echo "$PYTHON"
