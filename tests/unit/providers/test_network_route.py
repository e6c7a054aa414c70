"""Which proxy a provider's HTTP client uses (issue 10, item 1).

On-prem entries, and any entry whose server is at a local address, never use the
environment's or the system's proxy (``trust_env=False``); an entry's own ``proxy`` is
the only proxy it uses; cloud entries keep the environment's proxy settings. The real
proxy tests are ``tests/integration/providers/test_proxies.py`` (a logging proxy on
loopback, real chats through the chat service).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from providers import ConnectionFailedError, Locality, ProviderConfigError, create_provider
from providers.base import HTTPProvider, NetworkRoute, network_route
from tests.unit.providers.fakes import Server, Wire, chat, collect, make_spec

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
PROXY = "http://proxy-user:proxy-pass-4c1d@10.9.8.7:3128"


@pytest.fixture
def environment_proxy(monkeypatch: pytest.MonkeyPatch) -> str:
    url = "http://127.0.0.1:9"  # nothing listens: a request that used it would fail
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    return url


def proxied_patterns(provider: Any) -> list[str]:
    """The URL patterns the provider's httpx client sends through a proxy.

    httpx keeps them in ``AsyncClient._mounts`` (a pattern to a proxy transport, or to
    None for NO_PROXY exclusions); there is no public accessor.
    """
    client: httpx.AsyncClient = provider._client
    return [pattern.pattern for pattern, transport in client._mounts.items() if transport]


@pytest.mark.parametrize(
    ("base_url", "locality"),
    [
        ("http://127.0.0.1:8080/v1", Locality.ON_PREM),
        ("http://10.1.2.3:8000/v1", Locality.ON_PREM),
        ("http://[::1]:8080/v1", Locality.ON_PREM),
        ("http://gpu-box.lan:8000/v1", Locality.ON_PREM),
        ("https://llm.corp.example/v1", Locality.ON_PREM),  # declared on-prem
        ("http://192.168.1.20:8000/v1", Locality.PAID_CLOUD),  # a local address all the same
    ],
)
async def test_on_prem_entries_ignore_the_environment_proxy(
    environment_proxy: str, base_url: str, locality: Locality
) -> None:
    spec = make_spec("openai", base_url, locality=locality)
    assert network_route(spec) == NetworkRoute(proxy=None, trust_env=False)
    server = Server(httpx.Response(200, json={"data": []}))
    async with create_provider(spec, transport=server.transport) as provider:
        assert provider._client.trust_env is False  # type: ignore[attr-defined]
        assert await provider.list_models() == []
    async with create_provider(spec) as provider:  # the real network stack
        assert provider._client.trust_env is False  # type: ignore[attr-defined]
        assert proxied_patterns(provider) == []


@pytest.mark.parametrize("locality", [Locality.FREE_CLOUD, Locality.PAID_CLOUD])
async def test_cloud_entries_keep_the_environment_proxy(
    environment_proxy: str, locality: Locality
) -> None:
    spec = make_spec("openai", "https://api.openai.com/v1", locality=locality)
    assert network_route(spec) == NetworkRoute(proxy=None, trust_env=True)
    async with create_provider(spec) as provider:
        assert provider._client.trust_env is True  # type: ignore[attr-defined]
        assert "all://" in proxied_patterns(provider) or "https://" in proxied_patterns(provider)


@pytest.mark.parametrize(
    ("base_url", "locality"),
    [
        ("http://127.0.0.1:8080/v1", Locality.ON_PREM),
        ("https://api.openai.com/v1", Locality.PAID_CLOUD),
    ],
)
async def test_a_named_proxy_is_the_only_proxy(
    environment_proxy: str, base_url: str, locality: Locality
) -> None:
    spec = make_spec("openai", base_url, locality=locality, proxy=PROXY)
    assert network_route(spec) == NetworkRoute(proxy=PROXY, trust_env=False)
    async with create_provider(spec) as provider:
        assert provider._client.trust_env is False  # type: ignore[attr-defined]
        assert proxied_patterns(provider) == ["all://"]
    # With a transport (tests), the transport is the whole network, proxy included.
    server = Server(httpx.Response(200, json={"data": []}))
    async with create_provider(spec, transport=server.transport) as provider:
        assert await provider.list_models() == []
    assert len(server.requests) == 1


def test_the_proxy_is_not_in_the_specs_repr() -> None:
    spec = make_spec("openai", proxy=PROXY)
    assert "proxy-pass" not in repr(spec)


@pytest.mark.parametrize(
    "proxy", ["socks5://127.0.0.1:1080", "127.0.0.1:3128", "http://", "ftp://proxy.lan"]
)
def test_an_unusable_proxy_is_a_config_error(proxy: str) -> None:
    with pytest.raises(ProviderConfigError, match="`proxy`"):
        create_provider(make_spec("openai", proxy=proxy))


async def test_proxy_failures_name_the_proxy_without_its_credentials(wire: Wire) -> None:
    spec = make_spec(wire.type, proxy=PROXY, max_retries=0)
    server = Server(httpx.ProxyError(f"407 Proxy Authentication Required for {PROXY}"))
    async with create_provider(spec, transport=server.transport) as provider:
        with pytest.raises(ConnectionFailedError) as caught:
            await collect(provider, chat())
    message = str(caught.value)
    assert "http://10.9.8.7:3128" in message and "`proxy`" in message
    assert "proxy-pass-4c1d" not in message and "proxy-user" not in message


async def test_connect_failures_through_a_proxy_say_so(wire: Wire) -> None:
    spec = make_spec(wire.type, proxy=PROXY, max_retries=0)
    server = Server(httpx.ConnectError("[Errno 111] Connection refused"))
    async with create_provider(spec, transport=server.transport) as provider:
        with pytest.raises(
            ConnectionFailedError, match=re.escape("through the proxy at http://10.9.8.7:3128")
        ):
            await collect(provider, chat())


async def test_a_private_ca_in_ssl_cert_file_still_applies_without_trust_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """trust_env=False must not drop SSL_CERT_FILE: the provider reads it itself."""
    calls: list[bool] = []
    original = httpx.create_ssl_context

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("trust_env", True))
        return original(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", recording)
    spec = make_spec("openai", "https://10.0.0.5/v1")
    async with create_provider(spec) as provider:
        assert isinstance(provider, HTTPProvider)
        assert provider._client.trust_env is False
    assert calls and calls[0] is True
