#!/usr/bin/env bash
# Build oxloop's sdist and, from it, its wheels (one per CPython: the extension is not abi3) into
# dist/.
#
# The wheels are linked by zig (maturin --zig, ziglang from PyPI) against glibc 2.17 headers, so
# they carry the manylinux2014 tag (manylinux_2_17_<arch>) and install with pip on any Linux of
# that architecture with glibc 2.17 or later; `auditwheel show` must agree with that tag, or this
# fails. ARCHS picks the architectures: aarch64 wheels are cross-built the same way (rustup adds
# the aarch64 standard library once); they are checked by auditwheel but not run here (no
# aarch64 machine or emulator in CI).
#   bash scripts/build-wheels.sh                       # release wheels for 3.11 and 3.13, sdist
#   ARCHS="x86_64 aarch64" bash scripts/build-wheels.sh     # also the aarch64 wheels
#   PYTHONS=3.11 PROFILE=dev bash scripts/build-wheels.sh   # one quick unoptimised wheel
# PROFILE=dev skips the release profile's fat LTO (minutes on 2 cores); the wheel test in CI
# (scripts/test-wheel.sh) uses it. Tools go into .venv-build, apart from the test virtualenvs.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHONS=${PYTHONS:-"3.11 3.13"}
PROFILE=${PROFILE:-release}
ARCHS=${ARCHS:-x86_64}
OUT=${OUT:-dist}

. scripts/interpreter.sh

if [ ! -x .venv-build/bin/maturin ]; then
    "$(interpreter 3.11)" -m venv .venv-build
    .venv-build/bin/python -m pip install -q --upgrade pip
fi
.venv-build/bin/python -m pip install -q 'maturin>=1.5,<2' ziglang auditwheel
export PATH="$PWD/.venv-build/bin:$PATH" # maturin finds zig through the ziglang package

mkdir -p "$OUT"
echo "== sdist"
maturin sdist --out "$OUT"
# The wheels are built from the sdist, as pip would build them from it, so every build checks
# that the sdist is complete. Cargo's target directory stays the checkout's, to reuse its build
# of the dependencies.
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
tar -xzf "$OUT"/oxloop-*.tar.gz -C "$unpacked"
for arch in $ARCHS; do
    # The host's own architecture is built without --target: cargo then reuses the checkout's
    # build of the dependencies (target/<profile>), which the CI wheel test counts on.
    cross=()
    if [ "$arch" != "$(uname -m)" ]; then
        target=$arch-unknown-linux-gnu
        if ! rustup target list --installed | grep -qx "$target"; then
            rustup target add "$target"
        fi
        cross=(--target "$target")
    fi
    for version in $PYTHONS; do
        python=$(interpreter "$version")
        echo "== $arch wheel for Python $version ($PROFILE), from the sdist"
        # --compatibility manylinux2014: zig targets glibc 2.17; the tag is checked below.
        maturin build -q --profile "$PROFILE" --zig --compatibility manylinux2014 \
            "${cross[@]}" --interpreter "$python" \
            --manifest-path "$unpacked"/oxloop-*/Cargo.toml --target-dir "$PWD/target" --out "$OUT"
    done
    tag=manylinux_2_17_$arch
    for wheel in "$OUT"/oxloop-*"$arch".whl; do
        if ! auditwheel show "$wheel" | tr -d '\n' | grep -q "\"$tag\""; then
            echo "auditwheel does not find $wheel consistent with $tag:" >&2
            auditwheel show "$wheel" >&2
            exit 1
        fi
        echo "$wheel: auditwheel agrees ($tag)"
    done
done
