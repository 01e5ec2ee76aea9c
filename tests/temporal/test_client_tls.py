"""The client factory's TLS, mTLS and API-key paths against real TLS endpoints.

TLS and mTLS go through a TLS-terminating proxy in front of the real dev server, so the
whole connection (handshake, certificate checks, server name) is real; the API-key path
is checked by a gRPC frontend that answers GetSystemInfo only with the right bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    GetSystemInfoRequest,
    GetSystemInfoResponse,
)

from muster_dev.temporal import DevServer
from muster_runtime.client import connect, tls_config
from muster_runtime.settings import TemporalSettings
from tests.tlsutil import TestCA

SERVER_NAME = "temporal.muster.test"


class TlsProxy:
    """Terminates TLS (optionally requiring a client certificate) and pipes to a TCP target."""

    def __init__(self, context: ssl.SSLContext, target: tuple[str, int]) -> None:
        self.context = context
        self.target = target
        self.peers: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        if peer:
            subject = dict(item[0] for item in peer["subject"])
            self.peers.append(subject["commonName"])
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("pki"))


def server_context(ca: TestCA, *, require_client_cert: bool) -> ssl.SSLContext:
    issued = ca.issue("temporal-frontend", server=True, dns=(SERVER_NAME, "localhost"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    context.set_alpn_protocols(["h2"])
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(ca.ca.cert)
    return context


@pytest_asyncio.fixture(loop_scope="session")
async def proxies(ca: TestCA, dev_server: DevServer) -> AsyncIterator[list[TlsProxy]]:
    started: list[TlsProxy] = []
    yield started
    for proxy in started:
        await proxy.close()


async def start_proxy(
    started: list[TlsProxy], ca: TestCA, dev_server: DevServer, *, mtls: bool
) -> tuple[TlsProxy, int]:
    proxy = TlsProxy(
        server_context(ca, require_client_cert=mtls),
        (dev_server.config.ip, dev_server.config.port),
    )
    started.append(proxy)
    return proxy, await proxy.start()


async def test_mtls_through_to_the_real_server(
    ca: TestCA, dev_server: DevServer, proxies: list[TlsProxy], tmp_path: Path
) -> None:
    proxy, port = await start_proxy(proxies, ca, dev_server, mtls=True)
    client_cert = ca.issue("muster-worker", server=False)
    settings = TemporalSettings(
        address=f"127.0.0.1:{port}",
        tls_server_ca_cert_path=ca.ca.cert,
        tls_client_cert_path=client_cert.cert,
        tls_client_key_path=client_cert.key,
        tls_server_name=SERVER_NAME,
    )
    assert settings.tls_enabled()
    client = await connect(settings, tracing=False)
    assert await client.service_client.check_health()
    namespace = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace="default")
    )
    assert namespace.namespace_info.name == "default"
    assert "muster-worker" in proxy.peers


async def test_mtls_without_a_client_certificate_is_refused(
    ca: TestCA, dev_server: DevServer, proxies: list[TlsProxy]
) -> None:
    _, port = await start_proxy(proxies, ca, dev_server, mtls=True)
    settings = TemporalSettings(
        address=f"127.0.0.1:{port}",
        tls_server_ca_cert_path=ca.ca.cert,
        tls_server_name=SERVER_NAME,
    )
    # The proxy aborts the handshake: the server demanded a certificate we did not send.
    # (With TLS 1.3 the client learns it as a closed or failed transport, by timing.)
    with pytest.raises(RuntimeError, match=r"tonic::transport::Error\(Transport"):
        await connect(settings, tracing=False)


async def test_a_server_signed_by_another_ca_is_refused(
    ca: TestCA, dev_server: DevServer, proxies: list[TlsProxy], tmp_path: Path
) -> None:
    _, port = await start_proxy(proxies, ca, dev_server, mtls=False)
    other = TestCA(tmp_path, name="Some Other CA")
    settings = TemporalSettings(
        address=f"127.0.0.1:{port}",
        tls_server_ca_cert_path=other.ca.cert,
        tls_server_name=SERVER_NAME,
    )
    with pytest.raises(RuntimeError, match="UnknownIssuer"):
        await connect(settings, tracing=False)


async def test_server_tls_with_ca_given_as_data(
    ca: TestCA, dev_server: DevServer, proxies: list[TlsProxy]
) -> None:
    _, port = await start_proxy(proxies, ca, dev_server, mtls=False)
    settings = TemporalSettings.model_validate(
        {
            "address": f"localhost:{port}",
            "tls_server_ca_cert_data": ca.ca.cert.read_text(),
        }
    )
    config = tls_config(settings)
    assert not isinstance(config, bool)
    assert config.server_root_ca_cert == ca.ca.cert.read_bytes()
    assert config.client_cert is None
    client = await connect(settings, tracing=False)
    assert await client.service_client.check_health()


class _Frontend:
    """Answers WorkflowService.GetSystemInfo, but only to callers with the right API key."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.seen: list[str] = []

    async def get_system_info(
        self, request: GetSystemInfoRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> GetSystemInfoResponse:
        metadata = dict(context.invocation_metadata() or ())
        authorization = str(metadata.get("authorization", ""))
        self.seen.append(authorization)
        if authorization != f"Bearer {self.api_key}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad API key")
        return GetSystemInfoResponse(server_version="test")


@pytest_asyncio.fixture(loop_scope="session")
async def api_key_frontend(ca: TestCA) -> AsyncIterator[tuple[_Frontend, int]]:
    frontend = _Frontend("k-123")
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "temporal.api.workflowservice.v1.WorkflowService",
        {
            "GetSystemInfo": grpc.unary_unary_rpc_method_handler(
                frontend.get_system_info,
                request_deserializer=GetSystemInfoRequest.FromString,
                response_serializer=GetSystemInfoResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    issued = ca.issue("api-frontend", server=True, dns=(SERVER_NAME,))
    credentials = grpc.ssl_server_credentials([(issued.key.read_bytes(), issued.cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    yield frontend, port
    await server.stop(grace=None)


async def test_api_key_is_sent_as_bearer_token_over_tls(
    ca: TestCA, api_key_frontend: tuple[_Frontend, int]
) -> None:
    frontend, port = api_key_frontend
    settings = TemporalSettings.model_validate(
        {
            "address": f"127.0.0.1:{port}",
            "api_key": "k-123",
            "tls_server_ca_cert_path": str(ca.ca.cert),
            "tls_server_name": SERVER_NAME,
        }
    )
    await connect(settings, tracing=False)
    assert frontend.seen[-1] == "Bearer k-123"


async def test_a_wrong_api_key_is_rejected(
    ca: TestCA, api_key_frontend: tuple[_Frontend, int]
) -> None:
    frontend, port = api_key_frontend
    settings = TemporalSettings.model_validate(
        {
            "address": f"127.0.0.1:{port}",
            "api_key": "wrong",
            "tls_server_ca_cert_path": str(ca.ca.cert),
            "tls_server_name": SERVER_NAME,
        }
    )
    with pytest.raises(RuntimeError, match="bad API key"):
        await connect(settings, tracing=False)
    assert frontend.seen[-1] == "Bearer wrong"
