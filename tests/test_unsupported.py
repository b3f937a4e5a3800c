"""APIs oxloop does not implement yet say so clearly instead of failing somewhere deeper."""

import sys

import pytest
from nethelpers import run

UNSUPPORTED = {
    "connect_read_pipe": lambda loop: loop.connect_read_pipe(object, sys.stdin),
    "connect_write_pipe": lambda loop: loop.connect_write_pipe(object, sys.stdout),
    "subprocess_exec": lambda loop: loop.subprocess_exec(object, "true"),
    "subprocess_shell": lambda loop: loop.subprocess_shell(object, "true"),
}


@pytest.mark.oxloop_only("stock asyncio implements pipes and subprocesses")
@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_api_raises_not_implemented_naming_itself(loop, name):
    async def main():
        with pytest.raises(NotImplementedError, match=rf"loop\.{name}\(\).*not supported yet"):
            await UNSUPPORTED[name](loop)

    run(loop, main())
