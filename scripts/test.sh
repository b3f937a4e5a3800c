#!/usr/bin/env bash
# The whole test suite, on every CPython tested here (3.11 and 3.13): lint, Rust unit tests, then
# pytest on both stock asyncio and oxloop under each interpreter (CPython's own test_asyncio of
# that interpreter included). Between them, scripts/test-wheel.sh installs a wheel into a fresh
# virtualenv without Rust and runs the examples (first interpreter only, unoptimised build).
#
# Makes one virtualenv per interpreter (.venv for 3.11, .venv-3.13) and installs what it needs
# from the project's files; CPython 3.13 is built once by scripts/cpython313.sh.
#   PYTHONS="3.11" bash scripts/test.sh          # only some interpreters
#   bash scripts/test.sh -k streams              # arguments go to every pytest run
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHONS=${PYTHONS:-"3.11 3.13"}

. scripts/interpreter.sh

venv_dir() {
    if [ "$1" = 3.11 ]; then echo .venv; else echo ".venv-$1"; fi
}

prepare() { # interpreter version -> a virtualenv with the project and its test dependencies
    local python venv
    python=$(interpreter "$1")
    venv=$(venv_dir "$1")
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e '.[dev]'
}

started=$SECONDS
step() { # a section header, with the time since the start, to see where CI's minutes go
    echo "== $* [$((SECONDS - started)) s]"
}

first=${PYTHONS%% *}
step "Python $first: install"
prepare "$first"
lint_venv=$(venv_dir "$first")

step lint
cargo fmt --check
cargo clippy -q --all-targets -- -D warnings
"$lint_venv/bin/ruff" check python tests bench examples
"$lint_venv/bin/ruff" format --check python tests bench examples

step "cargo test"
cargo test -q

step "wheel: built with zig, installed without Rust, examples run (Python $first only)"
PYTHON=$first bash scripts/test-wheel.sh

for version in $PYTHONS; do
    if [ "$version" != "$first" ]; then
        step "Python $version: install"
        prepare "$version"
    fi
    step "Python $version: pytest"
    "$(venv_dir "$version")/bin/python" -m pytest -q -p no:cacheprovider "$@"
done
step done
