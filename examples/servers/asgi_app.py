"""A bare ASGI application (no framework) that answers every request with the class of the event
loop serving it, e.g. ``oxloop.loop.Loop``: the way to see which loop a server really runs.

    uvicorn asgi_app:app --loop oxloop:new_event_loop
    python -m oxloop -m hypercorn asgi_app:app
    gunicorn asgi_app:app -k gunicorn_workers.OxloopUvicornWorker

(run from this directory; README.md, "Using it with ...", has every command).
"""

import asyncio


def loop_name() -> str:
    kind = type(asyncio.get_running_loop())
    return f"{kind.__module__}.{kind.__qualname__}"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = loop_name().encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})
