#!/usr/bin/env bash
# The whole test suite: lint, Rust unit tests, then pytest on both loops.
# Makes its own virtualenv (.venv) and installs what it needs from the project's files.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

echo "== lint"
cargo fmt --check
cargo clippy -q --all-targets -- -D warnings
.venv/bin/ruff check python tests bench examples
.venv/bin/ruff format --check python tests bench examples

echo "== cargo test"
cargo test -q

echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
