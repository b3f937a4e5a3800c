"""TLS connections: the protocol that drives the user's `ssl.SSLObject` under every TLS
transport (`create_connection(ssl=)`, `create_server(ssl=)`, `start_tls`,
`connect_accepted_socket(ssl=)` and the Unix variants), and the switch between oxloop's and
asyncio's.

`TLSProtocol` is asyncio's `sslproto.SSLProtocol` with its per-record work in Rust
(`_oxloop.TlsLayer`, src/transport/tls.rs): decrypting what the socket received and handing it
to the application, encrypting what the application writes, and the handshake and shutdown
steps that call the TLS object. The state machine around them (transitions, timeouts,
connection loss) is asyncio's own, inherited unchanged, so it behaves as on stock asyncio of
the running version. The application's transport is asyncio's
`_SSLProtocolTransport` whose `write` is the Rust method. On an oxloop loop, the records the
application writes during one loop iteration go to the socket together at its end (one send);
`abort()` and fatal errors send them first, as they would be in the kernel already on asyncio.

The switch: `OXLOOP_TLS=stdlib` in the environment when a loop is made gives that loop
asyncio's own `SSLProtocol` (all Python), to compare or to step around a problem; any other
value, or none, gives `TLSProtocol`. A loop's choice is its `tls_implementation` attribute
("native" or "stdlib"), which may also be set on a loop before it makes connections.
"""

from __future__ import annotations

import os
from typing import Any

from . import _compat, _oxloop

__all__ = ["TLSProtocol", "tls_implementation_from_env"]


def tls_implementation_from_env() -> str:
    """ "stdlib" if OXLOOP_TLS says so, else "native"."""
    return "stdlib" if os.environ.get("OXLOOP_TLS", "").strip().lower() == "stdlib" else "native"


class _SSLAppTransport(_compat.SSLProtocolTransport):
    """asyncio's TLS application transport, writing through the Rust layer without a frame.

    Its class name says "ssl", as asyncio's does: CPython's tests check that.
    """

    def __init__(self, loop: Any, ssl_protocol: TLSProtocol) -> None:
        super().__init__(loop, ssl_protocol)
        self.write = ssl_protocol._app_write

    def close(self) -> None:
        super().close()
        if self._ssl_protocol is None:
            # A second close() lets go of the protocol (and so of the SSLContext); so must the
            # write method bound to it. Writing then fails as on asyncio.
            self.__dict__.pop("write", None)


class TLSProtocol(_oxloop.TlsLayer, _compat.SSLProtocol):
    """asyncio's SSLProtocol whose per-record paths and handshake and shutdown steps are
    `TlsLayer`'s (see the module doc)."""

    # asyncio's __init__ allocates a receive buffer of `max_size` bytes per connection (256 KiB,
    # zeroed: 2.7% of a handshake's CPU). TlsLayer receives into one buffer per thread and sizes
    # its reads itself, so nothing reads this: the per-connection buffer is left empty.
    max_size = 0

    # What TlsLayer._write_appdata leaves to asyncio: writes after the connection closed.
    _stdlib_write_appdata = _compat.SSLProtocol._write_appdata

    def _abort(self, *args: Any) -> None:
        self._flush_deferred()
        super()._abort(*args)

    def _fatal_error(self, *args: Any, **kwargs: Any) -> None:
        self._flush_deferred()
        super()._fatal_error(*args, **kwargs)

    def _get_app_transport(self) -> Any:
        # As asyncio's, with the transport class above.
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError("Creating _SSLProtocolTransport twice")
            self._app_transport = _SSLAppTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport
