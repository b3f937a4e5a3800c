#!/usr/bin/env bash
# The TLS tests of uvicorn's and aiohttp's own test suites, run unchanged on stock asyncio, on
# oxloop (its Rust TLS layer) and on oxloop with OXLOOP_TLS=stdlib; prints pytest's summary line
# of each run. Not in CI: it downloads the two projects' source distributions (their tests are
# not in the wheels) and installs their test requirements into a venv of its own.
#
#   bash scripts/tls-suites.sh [python]      # default python3.11; oxloop must be built for it
#                                            # (pip install -e . in the matching venv)
#
# oxloop comes from this checkout (python/ on the venv's path, with the extension module a
# `pip install -e .` or `maturin develop` left there) and is switched on by OXLOOP=1 (the start-up
# hook): uvicorn's tests run on anyio's asyncio runner and aiohttp's on its `loop` fixture, both
# of which make their loops through asyncio's policy. Stock asyncio's run has OXLOOP unset.
set -euo pipefail

PYTHON=${1:-python3.11}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${TLS_SUITES_DIR:-/tmp/oxloop-tls-suites}
UVICORN=0.55.0
AIOHTTP=3.14.5
VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV=$WORK/venv-$VERSION

mkdir -p "$WORK"
cd "$WORK"
if [ ! -d "$VENV" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q "uvicorn[standard]==$UVICORN" "aiohttp==$AIOHTTP" httpx2 \
        trustme pytest pytest-mock pytest-timeout anyio freezegun a2wsgi wsproto zttp \
        re-assert blockbuster cryptography coverage pytest-xdist proxy.py isal zlib_ng \
        pytest-codspeed
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$ROOT/python" >"$site/oxloop-checkout.pth"
    cp "$ROOT/python/wheel-data/purelib/oxloop_startup.pth" "$site/"
fi
for project in "uvicorn==$UVICORN" "aiohttp==$AIOHTTP"; do
    name=${project%%=*}
    if [ ! -d "$WORK/$name-${project##*=}" ]; then
        "$VENV/bin/pip" download -q --no-deps --no-binary :all: "$project" -d "$WORK"
        tar xzf "$WORK/$name-${project##*=}.tar.gz" -C "$WORK"
    fi
done

# aiohttp's tests are run from a copy without the source package beside them, so that they
# import the installed aiohttp (with its C parser) rather than the unbuilt source tree.
AIOHTTP_TESTS=$WORK/aiohttp-tests
if [ ! -d "$AIOHTTP_TESTS" ]; then
    mkdir -p "$AIOHTTP_TESTS"
    cp -r "$WORK/aiohttp-$AIOHTTP/tests" "$AIOHTTP_TESTS/"
    cp "$WORK/aiohttp-$AIOHTTP/pytest.ini" "$AIOHTTP_TESTS/"
fi

# The TLS tests: the tests whose names say TLS in the modules that have any (uvicorn: serving
# HTTPS, HTTP/2 over TLS, loading certificates; aiohttp: the client's TLS connections and
# fingerprints, HTTPS through a proxy, which upgrades with start_tls). aiohttp's uvloop test is
# left out: it makes a uvloop loop itself, which OXLOOP=1 turns into a warning (an error there).
UVICORN_TESTS=(
    tests/test_ssl.py tests/test_config.py tests/protocols/test_http2.py tests/protocols/test_http.py
    -k "ssl or tls or https"
)
AIOHTTP_SELECTION=(
    tests/test_client_functional.py tests/test_client_session.py tests/test_connector.py
    tests/test_client_request.py tests/test_client_fingerprint.py tests/test_test_utils.py
    tests/test_web_sendfile_functional.py tests/test_client_ws_functional.py
    tests/test_run_app.py tests/test_proxy.py tests/test_proxy_functional.py
    -k "(ssl or tls or https or fingerprint) and not uvloop"
)

run() {  # run LABEL DIR ENV... -- PYTEST-ARGS...
    local label=$1 dir=$2
    shift 2
    local envs=()
    while [ "$1" != "--" ]; do
        envs+=("$1")
        shift
    done
    shift
    local line
    line=$(cd "$dir" && env "${envs[@]}" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
        -o addopts="" "$@" 2>&1 | tail -1 || true)
    echo "$label: $line"
}

for loop in asyncio oxloop oxloop-stdlib; do
    case $loop in
        asyncio) envs=(OXLOOP=) ;;
        oxloop) envs=(OXLOOP=1 OXLOOP_TLS=) ;;
        oxloop-stdlib) envs=(OXLOOP=1 OXLOOP_TLS=stdlib) ;;
    esac
    run "$VERSION uvicorn $UVICORN $loop" "$WORK/uvicorn-$UVICORN" "${envs[@]}" -- \
        "${UVICORN_TESTS[@]}"
    run "$VERSION aiohttp $AIOHTTP $loop" "$AIOHTTP_TESTS" "${envs[@]}" -- \
        "${AIOHTTP_SELECTION[@]}"
done
