"""Which chats go through a proxy: real turns through ``ChatService`` against llama-server,
with a real logging proxy in the environment (issue 10, item 1).

On-prem providers never use the environment's (or the system's) proxy: a Private or an
on-prem Standard chat with ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` set sends the
proxy nothing. A proxy named in the entry (``proxy:``) is used, and the tier policy
judges the entry by the less private of the server's and the proxy's localities, before
any byte is sent. Cloud providers keep using the environment's proxy.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Iterator

import pytest

from app.chat.events import TurnDelta, TurnEvent, TurnFinished
from app.chat.service import ChatService
from app.config import LoadedConfig, parse_config
from app.errors import PolicyRefusedError
from app.store.library import Library, memory_connection
from app.store.models import MessageStatus, Tier
from tests.integration.providers.logging_proxy import LoggingProxy
from tests.peers.llama_server import MODEL_ALIAS, LlamaServer

pytestmark = pytest.mark.llama_server

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
SENTINEL = "QUOKKA-PROXY-SENTINEL-4410"
#: A name only the explicit test proxy resolves (to llama-server's address).
CLOUD_HOST = "llm.cloud.example"


@pytest.fixture
def environment_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoggingProxy]:
    """A logging proxy named in every proxy variable of the environment."""
    with LoggingProxy(hosts={CLOUD_HOST: "127.0.0.1"}) as proxy:
        for name in PROXY_VARIABLES:
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        yield proxy


@pytest.fixture
def named_proxy() -> Iterator[LoggingProxy]:
    """A second logging proxy, for entries that name it in ``proxy:``."""
    with LoggingProxy() as proxy:
        yield proxy


ServiceFactory = Callable[[str], ChatService]


@pytest.fixture
def make_service(llama_server: LlamaServer) -> Iterator[ServiceFactory]:
    """Build a chat service whose config has the ``llms`` entries given as YAML."""
    made: list[ChatService] = []

    def make(entries: str) -> ChatService:
        config = parse_config(f"llms:\n{entries}", "test", {})
        library = Library(memory_connection(), memory_connection())
        service = ChatService(library, LoadedConfig(config, None, {}), checkpoint_seconds=0.05)
        made.append(service)
        return service

    yield make
    for service in made:  # a title may still be querying on the database thread
        service.close()


def entry(name: str, base_url: str, **fields: str) -> str:
    lines = [
        f"  - provider_name: {name}",
        "    type: openai",
        f"    base_url: {base_url}",
        f"    model_name: {MODEL_ALIAS}",
        "    context_size: 512",
        "    max_retries: 0",
    ]
    lines += [f"    {key}: {value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


async def turn(service: ChatService, chat_id: str) -> TurnFinished:
    events: list[TurnEvent] = []
    stream: AsyncGenerator[TurnEvent, None] = service.send(chat_id, f"say {SENTINEL}", max_tokens=6)
    async with contextlib.aclosing(stream):
        events = [event async for event in stream]
    finished = events[-1]
    assert isinstance(finished, TurnFinished), events
    assert finished.error is None, finished.error
    assert finished.message.status is MessageStatus.COMPLETE
    assert any(isinstance(e, TurnDelta) for e in events)
    return finished


async def test_private_and_on_prem_standard_chats_send_the_environment_proxy_nothing(
    llama_server: LlamaServer, environment_proxy: LoggingProxy, make_service: ServiceFactory
) -> None:
    service = make_service(entry("local", f"{llama_server.base_url}/v1"))
    private = await service.create_chat(Tier.PRIVATE)
    await turn(service, private.id)
    standard = await service.create_chat(Tier.STANDARD)
    await turn(service, standard.id)
    await service.wait_for_titles(30)  # the title requests go out too
    assert environment_proxy.received == b""
    assert environment_proxy.targets == []


async def test_an_entry_with_proxy_goes_through_that_proxy_only(
    llama_server: LlamaServer,
    environment_proxy: LoggingProxy,
    named_proxy: LoggingProxy,
    make_service: ServiceFactory,
) -> None:
    base_url = f"{llama_server.base_url}/v1"
    service = make_service(entry("via-proxy", base_url, proxy=named_proxy.url))
    chat = await service.create_chat(Tier.PRIVATE)  # a loopback proxy is on-prem by default
    await turn(service, chat.id)
    assert f"POST {base_url}/chat/completions".encode() in named_proxy.received
    assert SENTINEL.encode() in named_proxy.received
    assert environment_proxy.received == b""


async def test_private_chat_through_a_cloud_proxy_is_refused_before_any_byte_is_sent(
    llama_server: LlamaServer,
    environment_proxy: LoggingProxy,
    named_proxy: LoggingProxy,
    make_service: ServiceFactory,
) -> None:
    base_url = f"{llama_server.base_url}/v1"
    service = make_service(
        entry("local", base_url)
        + entry("via-cloud-proxy", base_url, proxy=named_proxy.url, proxy_locality="paid_cloud")
    )
    with pytest.raises(PolicyRefusedError, match="is paid cloud"):
        await service.create_chat(Tier.PRIVATE, provider="via-cloud-proxy")
    with pytest.raises(PolicyRefusedError):
        await service.create_chat(Tier.EPHEMERAL, provider="via-cloud-proxy")
    chat = await service.create_chat(Tier.PRIVATE)
    with pytest.raises(PolicyRefusedError):
        await service.update(chat.id, provider="via-cloud-proxy")
    # A Private chat that names the entry (say, from before the proxy was added) is
    # refused when it sends, before its message is saved or anything leaves.
    store = service.library.store(Tier.PRIVATE)
    stale = store.create_chat(provider="via-cloud-proxy", model=MODEL_ALIAS)
    stream = service.send(stale.id, f"say {SENTINEL}")
    with pytest.raises(PolicyRefusedError):
        async with contextlib.aclosing(stream):
            async for _event in stream:
                pass
    assert store.full_thread(stale.id) == []
    assert named_proxy.received == b"" and environment_proxy.received == b""
    # A Standard chat may use it, and then it does go through the proxy.
    standard = await service.create_chat(Tier.STANDARD, provider="via-cloud-proxy")
    await turn(service, standard.id)
    assert SENTINEL.encode() in named_proxy.received


async def test_cloud_entries_keep_using_the_environment_proxy(
    llama_server: LlamaServer, environment_proxy: LoggingProxy, make_service: ServiceFactory
) -> None:
    # A cloud entry (its host resolves only at the proxy, like a corporate network's).
    cloud_url = f"http://{CLOUD_HOST}:{llama_server.port}/v1"
    service = make_service(entry("cloud", cloud_url, locality="paid_cloud"))
    chat = await service.create_chat(Tier.STANDARD)
    await turn(service, chat.id)
    assert f"POST {cloud_url}/chat/completions".encode() in environment_proxy.received
