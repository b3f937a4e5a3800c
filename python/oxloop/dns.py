"""Name resolution for the loop: `getaddrinfo`, `getnameinfo` and `_ensure_resolved`.

Semantics are those of `asyncio.base_events`: resolution runs in the default executor, because
the C resolver blocks (DNS, /etc/hosts, NSS modules), and debug mode logs every lookup, at INFO
level when it took `slow_callback_duration` or longer.

oxloop adds one thing: a query whose host is a numeric address ("127.0.0.1", "::1", or None)
and whose port is numeric is answered on the loop thread. Asking the C resolver with
AI_NUMERICHOST | AI_NUMERICSERV makes it parse the strings and build the list without any lookup,
and for such a query the list is the one the plain call returns. Anything it refuses (a host
name, a service name, a bad argument) goes to the executor as in asyncio, which then produces
asyncio's result or error.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from . import _compat

__all__ = ["DnsMixin"]

logger = logging.getLogger("asyncio")

# Flags that keep the C resolver from doing any lookup: it only parses numbers.
_NUMERIC_ONLY = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
# A canonical name may need a lookup even for a numeric host: such queries use the executor.
_NEEDS_LOOKUP = socket.AI_CANONNAME

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


def _describe_query(host: Any, port: Any, family: int, type: int, proto: int, flags: int) -> str:
    parts = [f"{host}:{port!r}"]
    for name, value in (("family", family), ("type", type), ("proto", proto), ("flags", flags)):
        if value:
            parts.append(f"{name}={value!r}")
    return ", ".join(parts)


class DnsMixin:
    """`getaddrinfo`/`getnameinfo` for `oxloop.Loop` (which provides `run_in_executor`)."""

    async def getaddrinfo(
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        """Resolve `host`/`port` like `socket.getaddrinfo`, without blocking the loop."""
        if not flags & _NEEDS_LOOKUP:
            try:
                infos = socket.getaddrinfo(host, port, family, type, proto, flags | _NUMERIC_ONLY)
            except Exception:
                # Not numeric, or not valid: the executor call below gives the definitive answer
                # (result or error) exactly as asyncio would.
                pass
            else:
                if self.get_debug():
                    query = _describe_query(host, port, family, type, proto, flags)
                    logger.debug("Numeric address info %s answered on the loop: %r", query, infos)
                return infos
        resolve = self._getaddrinfo_logged if self.get_debug() else socket.getaddrinfo
        return await self.run_in_executor(None, resolve, host, port, family, type, proto, flags)

    def _getaddrinfo_logged(
        self, host: Any, port: Any, family: int, type: int, proto: int, flags: int
    ) -> list[AddrInfo]:
        """`socket.getaddrinfo` with asyncio's debug-mode log lines (runs in the executor)."""
        query = _describe_query(host, port, family, type, proto, flags)
        logger.debug("Get address info %s", query)
        started = self.time()
        infos = socket.getaddrinfo(host, port, family, type, proto, flags)
        took = self.time() - started
        level = logging.INFO if took >= self.slow_callback_duration else logging.DEBUG
        logger.log(level, "Getting address info %s took %.3fms: %r", query, took * 1e3, infos)
        return infos

    async def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]:
        """Reverse-resolve `sockaddr` like `socket.getnameinfo`, without blocking the loop."""
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    async def _ensure_resolved(
        self,
        address: tuple[Any, ...],
        *,
        family: int = 0,
        type: int = socket.SOCK_STREAM,
        proto: int = 0,
        flags: int = 0,
        loop: Any = None,
    ) -> list[AddrInfo]:
        """Address infos for `address` (host, port[, flowinfo, scope_id]), as asyncio's.

        An IP literal becomes a single entry built without the resolver, the way asyncio does it
        (its `_ipaddr_info` decides, so both loops return the same entry); any other host is
        resolved with the `getaddrinfo` of `loop`, which asyncio's `create_connection` and
        `create_server` (used as they are by oxloop) pass as this loop.
        """
        host, port = address[:2]
        info = _compat.ipaddr_info(host, port, family, type, proto, *address[2:])
        if info is not None:
            return [info]
        resolver = self if loop is None else loop
        return await resolver.getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags
        )
