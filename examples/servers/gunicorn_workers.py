"""uvicorn's gunicorn worker on oxloop: gunicorn names a worker class, and uvicorn's
(`uvicorn_worker.UvicornWorker`, from the `uvicorn-worker` package) asks for ``loop="auto"``,
which is uvloop or asyncio's SelectorEventLoop, never the policy's loop. Copy this subclass into
your project:

    gunicorn asgi_app:app -k gunicorn_workers.OxloopUvicornWorker

With an older uvicorn (before the worker moved to its own package), the base class is
``uvicorn.workers.UvicornWorker``; `LegacyOxloopUvicornWorker` below is that variant.
"""

from uvicorn.workers import UvicornWorker as LegacyUvicornWorker
from uvicorn_worker import UvicornWorker


class OxloopUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "loop": "oxloop:new_event_loop"}


class LegacyOxloopUvicornWorker(LegacyUvicornWorker):
    CONFIG_KWARGS = {**LegacyUvicornWorker.CONFIG_KWARGS, "loop": "oxloop:new_event_loop"}
