#!/usr/bin/env bash
# The wheel test: build a wheel the way scripts/build-wheels.sh does, install it into a fresh
# virtualenv with no Rust toolchain on PATH, and run the examples from it, outside the checkout.
#
# CI runs it for the first interpreter only and with PROFILE=dev, to stay inside its time budget
# (a release build adds a fat-LTO build of its own per interpreter).
#   bash scripts/test-wheel.sh                             # PYTHON=3.11 PROFILE=dev by default
#   PYTHON=3.13 PROFILE=release bash scripts/test-wheel.sh  # a release wheel, by hand
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

PYTHON=${PYTHON:-3.11}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

PYTHONS=$PYTHON PROFILE=${PROFILE:-dev} OUT="$work/dist" bash scripts/build-wheels.sh
wheel=$(ls "$work"/dist/oxloop-*.whl)

# PATH without cargo, rustc or maturin: the wheel must need none of them.
clean_path=$(tr ':' '\n' <<<"$PATH" | while read -r dir; do
    [ -e "$dir/cargo" ] || [ -e "$dir/rustc" ] || [ -e "$dir/maturin" ] || printf '%s:' "$dir"
done)
clean_path=${clean_path%:}
. scripts/interpreter.sh
base_python=$(interpreter "$PYTHON")
if PATH=$clean_path command -v cargo rustc >/dev/null; then
    echo "a Rust toolchain is still on PATH" >&2 && exit 1
fi

echo "== install $(basename "$wheel") into a fresh virtualenv"
PATH=$clean_path "$base_python" -m venv "$work/venv"
PATH=$clean_path "$work/venv/bin/python" -m pip install -q --no-index "$wheel"

cp -r examples "$work/examples"
cd "$work" # away from the checkout: only the installed oxloop is importable
export PATH="$work/venv/bin:$clean_path"
python - <<'PY'
import asyncio, importlib.resources, os, sysconfig
import oxloop

site = sysconfig.get_paths()["purelib"]
assert oxloop.__file__.startswith(site), oxloop.__file__
package = importlib.resources.files("oxloop")
assert package.joinpath("py.typed").is_file() and package.joinpath("_oxloop.pyi").is_file()
assert os.path.isfile(os.path.join(site, "oxloop_startup.pth"))
print("installed:", os.path.dirname(oxloop.__file__), "(py.typed, _oxloop.pyi, start-up hook)")
PY
[ "$(OXLOOP=1 python -c 'import asyncio; print(type(asyncio.new_event_loop()).__name__)')" = Loop ]
for example in examples/*.py examples/pitfalls/*.py; do
    echo "== $example"
    timeout 60 python "$example" >/dev/null
done
echo "== the wheel installs and runs the examples without Rust"
