"""The provider-type registry: built-ins, third-party entry points, unknown types."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from importlib import metadata
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

from providers import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    FinishEvent,
    ModelInfo,
    Provider,
    ProviderConfigError,
    ProviderSpec,
    Role,
    TextDelta,
    UnknownProviderTypeError,
    create_provider,
    provider_types,
)
from providers.anthropic import AnthropicProvider
from providers.ollama import OllamaProvider
from providers.openai import OpenAIProvider
from providers.registry import ENTRY_POINT_GROUP
from tests.unit.providers.fakes import make_spec


class EchoProvider:
    """A third-party provider type, as a plug-in would write it."""

    def __init__(
        self, spec: ProviderSpec, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.spec = spec
        self.closed = False

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        yield TextDelta(request.messages[-1].content)
        yield FinishEvent("stop")

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id="echo")]

    async def aclose(self) -> None:
        self.closed = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class NotAProvider:
    def __init__(self, spec: ProviderSpec, **kwargs: Any) -> None:
        self.spec = spec


def fake_entry_points(
    monkeypatch: pytest.MonkeyPatch, entries: dict[str, str], *, keep_builtins: bool = True
) -> None:
    """Make ``importlib.metadata.entry_points`` report ``entries`` in the provider group."""
    real = metadata.entry_points(group=ENTRY_POINT_GROUP) if keep_builtins else []
    extra = [metadata.EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in entries.items()]

    def entry_points(**selection: Any) -> metadata.EntryPoints:
        assert selection == {"group": ENTRY_POINT_GROUP}
        return metadata.EntryPoints([*real, *extra])

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_builtin_types() -> None:
    types = provider_types()
    assert types["openai"] is OpenAIProvider
    assert types["ollama"] is OllamaProvider
    assert types["anthropic"] is AnthropicProvider


def test_builtin_types_work_without_installed_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {}, keep_builtins=False)
    assert sorted(provider_types()) == ["anthropic", "ollama", "openai"]


def test_unknown_type_lists_the_known_ones() -> None:
    spec = make_spec("olama", base_url="http://127.0.0.1:11434")
    with pytest.raises(UnknownProviderTypeError) as info:
        create_provider(spec)
    message = str(info.value)
    assert "'olama' is not a provider type" in message
    assert "anthropic, ollama, openai" in message
    assert info.value.known == ["anthropic", "ollama", "openai"]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ProviderConfigError)


async def test_third_party_type_through_an_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"echo": f"{__name__}:EchoProvider"})
    assert provider_types()["echo"] is EchoProvider
    spec = make_spec("echo", base_url="http://127.0.0.1:1")
    async with create_provider(spec) as provider:
        assert isinstance(provider, EchoProvider)
        assert isinstance(provider, Provider)
        request = ChatRequest(messages=[ChatMessage(role=Role.USER, content="ping")])
        events = [event async for event in provider.stream_chat(request)]
        assert events == [TextDelta("ping"), FinishEvent("stop")]
        assert [m.id for m in await provider.list_models()] == ["echo"]
    assert provider.closed


def test_third_party_cannot_replace_a_builtin(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_entry_points(monkeypatch, {"openai": f"{__name__}:EchoProvider"})
    with caplog.at_level(logging.WARNING, logger="providers.registry"):
        assert provider_types()["openai"] is OpenAIProvider
    assert "built-in" in caplog.text


def test_broken_plugin_is_skipped_in_the_listing_and_named_when_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_entry_points(monkeypatch, {"broken": "no_such_module_for_hushchat:Provider"})
    with caplog.at_level(logging.WARNING, logger="providers.registry"):
        assert "broken" not in provider_types()
    assert "failed to load" in caplog.text
    with pytest.raises(ProviderConfigError, match=r"'broken'.*failed to load"):
        create_provider(make_spec("broken", base_url="http://127.0.0.1:1"))


def test_a_class_that_is_not_a_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, {"odd": f"{__name__}:NotAProvider"})
    with pytest.raises(ProviderConfigError, match="does not implement the Provider interface"):
        create_provider(make_spec("odd", base_url="http://127.0.0.1:1"))


async def test_builtin_providers_satisfy_the_protocol() -> None:
    for wire_type in ("openai", "ollama", "anthropic"):
        async with create_provider(make_spec(wire_type)) as provider:
            assert isinstance(provider, Provider)
            assert provider.spec.type == wire_type


@pytest.mark.parametrize(
    "base_url", ["127.0.0.1:8080/v1", "ftp://host/v1", "http://", "http://[::1"]
)
def test_unusable_base_url_is_refused_at_creation(base_url: str) -> None:
    with pytest.raises(ProviderConfigError, match="base_url"):
        create_provider(make_spec("openai", base_url=base_url))
