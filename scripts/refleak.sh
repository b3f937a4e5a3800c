#!/usr/bin/env bash
# Refleak runs, as CPython's `python -m test -R` does them: a debug CPython 3.13 (--with-pydebug,
# so sys.gettotalrefcount() exists) runs loop workloads several times in one process and reports
# how many references and allocated memory blocks each run leaves behind (scripts/refleak.py).
# Not part of scripts/test.sh: the interpreter build takes several minutes and the runs are slow.
#
#   bash scripts/refleak.sh                  # every workload, stock asyncio and oxloop
#   bash scripts/refleak.sh --loop oxloop tcp_echo timers   # arguments go to scripts/refleak.py
#
# The interpreter is built once (same Debian source package as scripts/cpython313.sh, whose
# download is kept in OXLOOP_CPYTHON313_DOWNLOADS) into /opt/oxloop-cpython-3.13.5-debug; the
# virtualenv .venv-debug gets oxloop built by maturin for that interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

export OXLOOP_CPYTHON313_PREFIX=${OXLOOP_CPYTHON313_DEBUG_PREFIX:-/opt/oxloop-cpython-3.13.5-debug}
export OXLOOP_CPYTHON313_CONFIGURE=--with-pydebug
export OXLOOP_CPYTHON313_CHECK='import sys, ssl, ctypes; sys.gettotalrefcount()'
export OXLOOP_CPYTHON313_DOWNLOADS=${OXLOOP_CPYTHON313_DOWNLOADS:-${XDG_CACHE_HOME:-$HOME/.cache}/oxloop/cpython-src}
python=$(bash scripts/cpython313.sh)

venv=.venv-debug
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
# Not editable: the runner must import the extension built for this interpreter, and a plain
# install keeps .venv-debug's build apart from the other virtualenvs' in-tree one.
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q . pytest
exec "$venv/bin/python" scripts/refleak.py "$@"
