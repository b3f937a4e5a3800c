"""OXLOOP=1 at interpreter start-up (oxloop_startup.pth, python/oxloop/_startup.py), and
`python -m oxloop` handing it to the processes the program starts.

Not parametrised over loops: the subject is which loop a fresh interpreter gets.
"""

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

# The module of the loop a fresh interpreter's asyncio makes.
PROBE = textwrap.dedent(
    """\
    import asyncio
    loop = asyncio.new_event_loop()
    print(type(loop).__module__)
    loop.close()
    """
)


def run_python(*args, oxloop=None, cwd=None):
    env = {name: value for name, value in os.environ.items() if name != "OXLOOP"}
    if oxloop is not None:
        env["OXLOOP"] = oxloop
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_the_startup_file_is_installed_in_site_packages():
    pth = Path(sysconfig.get_paths()["purelib"]) / "oxloop_startup.pth"
    assert pth.is_file(), "install oxloop (pip install -e .) so its start-up hook is in place"


@pytest.mark.parametrize("value, expected", [("1", "oxloop.loop"), ("0", "asyncio.unix_events")])
def test_environment_variable_picks_the_loop_at_startup(value, expected):
    assert run_python("-c", PROBE, oxloop=value).stdout.strip() == expected


def test_without_the_variable_oxloop_is_not_imported():
    code = "import sys; print('oxloop' in sys.modules, 'asyncio' in sys.modules)"
    assert run_python("-c", code).stdout.strip() == "False False"


def test_python_m_oxloop_reaches_a_spawned_child(tmp_path):
    script = tmp_path / "spawner.py"
    script.write_text(
        textwrap.dedent(
            """\
            import asyncio, multiprocessing

            def loop_module(_):
                return type(asyncio.new_event_loop()).__module__

            if __name__ == "__main__":
                with multiprocessing.get_context("spawn").Pool(1) as pool:
                    print(pool.map(loop_module, [0])[0])
            """
        )
    )
    assert run_python("-m", "oxloop", str(script)).stdout.strip() == "oxloop.loop"


def test_a_loop_the_program_makes_itself_is_reported_once():
    code = textwrap.dedent(
        """\
        import asyncio
        for _ in range(2):
            with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
                runner.run(asyncio.sleep(0))
        asyncio.run(asyncio.sleep(0))
        """
    )
    stderr = run_python("-c", code, oxloop="1").stderr
    assert stderr.count("OXLOOP is set, but this program runs its event loop on") == 1
    assert "_UnixSelectorEventLoop" in stderr
