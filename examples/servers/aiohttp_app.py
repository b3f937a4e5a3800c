"""An aiohttp application that answers every request with the class of the event loop serving
it, e.g. ``oxloop.loop.Loop``.

    python aiohttp_app.py --port 8080                                   # web.run_app(loop=...)
    python -m oxloop -m aiohttp.web -H 127.0.0.1 -P 8080 aiohttp_app:init_func
    OXLOOP=1 gunicorn aiohttp_app:make_app -k aiohttp.GunicornWebWorker

(run from this directory; README.md, "Using it with ...", has every command).
"""

import argparse
import asyncio

from aiohttp import web

import oxloop


async def loop_name(request: web.Request) -> web.Response:
    kind = type(asyncio.get_running_loop())
    return web.Response(text=f"{kind.__module__}.{kind.__qualname__}")


def init_func(argv: list[str]) -> web.Application:
    """The factory `python -m aiohttp.web` calls with the arguments it did not parse."""
    app = web.Application()
    app.router.add_get("/", loop_name)
    return app


async def make_app() -> web.Application:
    """The factory aiohttp's gunicorn worker awaits."""
    return init_func([])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, loop=oxloop.new_event_loop())
