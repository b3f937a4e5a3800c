#!/usr/bin/env bash
# The aarch64 wheel, run: cross-builds it (scripts/build-wheels.sh, ARCHS=aarch64), then runs the
# examples and the test suite on an aarch64 CPython 3.11 under qemu's user-mode emulation.
# Not part of CI: emulation makes the suite take about half an hour, and setting it up changes
# the machine (needs root): it installs qemu-user, adds arm64 as a dpkg architecture to download
# Debian's arm64 python3.11 (unpacked into $ROOT, not installed), and registers qemu-aarch64 with
# binfmt_misc so that the tests' child processes (sys.executable) run emulated too.
#   sudo bash scripts/test-aarch64.sh                  # examples and tests (pytest arguments follow)
#   sudo bash scripts/test-aarch64.sh tests/test_tcp.py
# Timing-bound tests (examples that print what overlapped, diagnostics thresholds) can fail under
# emulation, which runs about ten times slower; tests needing the pip-installed start-up hook, the
# integrations, the benchmarks and CPython's own suite are left out.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-/tmp/oxloop-aarch64}
ROOT=$WORK/root # Debian's arm64 python3.11 and the libraries it needs, unpacked
SITE=$WORK/site # the oxloop wheel, unpacked; $WORK/pure: pytest and the tests' dependencies

command -v qemu-aarch64 >/dev/null || apt-get install -y -q qemu-user
if [ ! -x "$ROOT/usr/bin/python3.11" ]; then
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get update -q
    mkdir -p "$WORK/debs" "$ROOT"
    # python3.11 and everything it depends on, for arm64 (tools a Python process never runs left
    # out).
    packages=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances python3.11:arm64 | grep -E '^[a-z0-9].*:arm64$' |
        grep -vE '^(debconf|dpkg|perl|tzdata|install-info|dash|bash|coreutils|libc-bin|readline-common|media-types)' |
        sort -u)
    (cd "$WORK/debs" && apt-get download $packages)
    for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
fi
export QEMU_LD_PREFIX=$ROOT
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    # aarch64 ELF executables (e_machine 0xb7) go to qemu-aarch64.
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64:' \
        >/proc/sys/fs/binfmt_misc/register
fi
python=$ROOT/usr/bin/python3.11

rm -rf "$WORK/dist" "$SITE"
ARCHS=aarch64 PYTHONS=3.11 PROFILE=${PROFILE:-dev} OUT="$WORK/dist" bash scripts/build-wheels.sh
"$python" -m zipfile -e "$WORK"/dist/oxloop-*-cp311-*aarch64.whl "$SITE"
. scripts/interpreter.sh
"$(interpreter 3.11)" -m pip install -q --target "$WORK/pure" --upgrade --only-binary=:all: \
    --python-version 3.11 --platform manylinux2014_aarch64 pytest pytest-timeout hypothesis trustme
export PYTHONPATH=$SITE:$WORK/pure

echo "== on $("$python" -c 'import platform; print(platform.machine(), platform.python_version())')"
for example in examples/*.py; do
    echo "== $example"
    "$python" "$example" >/dev/null
done
echo "== pytest"
if [ $# -eq 0 ]; then
    set -- tests --ignore=tests/test_cpython_suite.py --ignore=tests/test_startup.py \
        --ignore=tests/test_integrations_servers.py --ignore=tests/test_integrations_anyio.py \
        --ignore=tests/test_pytest_plugin.py --ignore=tests/test_bench_net_smoke.py \
        --ignore=tests/test_bench_smoke.py --ignore=tests/test_layout.py
fi
"$python" -m pytest -q -p no:cacheprovider "$@"
