"""Helpers for the TLS tests (test_tls, test_sendfile): a throwaway certificate authority and a
server certificate for `localhost` / 127.0.0.1, made at test time with the `openssl` command
line, and the `ssl.SSLContext`s built from them.

Not a test module: tests import it as `from tlshelpers import ...` (see nethelpers). The
session-scoped `tls` fixture of conftest.py calls `make_tls_files` once per run.
"""

import asyncio
import dataclasses
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from nethelpers import RecordingProtocol, stream_echo_handler

SERVER_HOSTNAME = "localhost"

# What a server certificate signed by the test CA carries: names a client checks against,
# and the usages a strict verifier wants to see.
_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""

_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """Paths of the PEM files: the CA certificate, the server certificate and its key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def server_context(self):
        """A server context presenting the `localhost` certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx

    def client_context(self):
        """A client context that trusts only the test CA (and checks the hostname)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=self.ca_cert)
        return ctx


def untrusting_client_context():
    """A client context that verifies certificates but trusts no CA at all."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


_OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def _openssl(*args, cwd):
    subprocess.run(
        [_OPENSSL, *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30
    )


def make_tls_files(directory):
    """Make a CA and a server certificate it signs (EC P-256, valid two days) in `directory`.

    Skips the test if the `openssl` command line is not available.
    """
    if not Path(_OPENSSL).exists():
        pytest.skip("the openssl command line is needed to make test certificates")
    directory = Path(directory)
    _openssl(
        "req", "-x509", *_EC_KEY, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=oxloop test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-new", *_EC_KEY, "-keyout", "server.key", "-out", "server.csr",
        "-subj", f"/CN={SERVER_HOSTNAME}",
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(_SERVER_EXTENSIONS)
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
        cwd=directory,
    )  # fmt: skip
    return TLSFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")


def record_exception_handler(loop):
    """Install an exception handler that keeps every context it gets; returns that list."""
    calls = []
    loop.set_exception_handler(lambda _loop, context: calls.append(context))
    return calls


async def tls_stream_server(tls, handler=stream_echo_handler, **kwargs):
    """A TLS streams server on loopback (echo by default): (server, port)."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls.server_context(), **kwargs)
    return server, server.sockets[0].getsockname()[1]


async def open_tls(tls, port, **kwargs):
    """A TLS streams connection to `port` that trusts the test CA: (reader, writer)."""
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls.client_context(), server_hostname=SERVER_HOSTNAME, **kwargs
    )


async def connected_pair(tls, accepted, **client_options):
    """A TLS server made with `accepted` (nethelpers.Accepted), a client connection to it (a
    RecordingProtocol; `client_options` go to create_connection) and the server side's
    protocol, handshaken: (server, transport, protocol, server_protocol)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(accepted, "127.0.0.1", 0, ssl=tls.server_context())
    port = server.sockets[0].getsockname()[1]
    transport, proto = await loop.create_connection(
        RecordingProtocol,
        "127.0.0.1",
        port,
        ssl=tls.client_context(),
        server_hostname=SERVER_HOSTNAME,
        **client_options,
    )
    server_proto = await accepted.next()
    await asyncio.wait_for(server_proto.made, 10)
    return server, transport, proto, server_proto
