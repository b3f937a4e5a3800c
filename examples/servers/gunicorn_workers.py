"""uvicorn's gunicorn worker on oxloop: gunicorn names a worker class, and uvicorn's own
(`uvicorn.workers.UvicornWorker`) asks for ``loop="auto"``, which is uvloop or asyncio's
SelectorEventLoop, never the policy's loop. Copy this subclass into your project:

    gunicorn asgi_app:app -k gunicorn_workers.OxloopUvicornWorker
"""

from uvicorn.workers import UvicornWorker


class OxloopUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "loop": "oxloop:new_event_loop"}
