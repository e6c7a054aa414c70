"""A provider whose answer is whatever a script yields: for service, UI and benchmark
tests that need exact control over the stream (timing, errors, cuts) without a server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

from providers import ChatRequest, ModelInfo, ProviderSpec

Script = Callable[[ChatRequest], AsyncIterator[Any]]


class ScriptedProvider:
    """Satisfies ``providers.Provider``; ``stream_chat`` yields what ``script`` yields."""

    def __init__(self, spec: ProviderSpec, script: Script) -> None:
        self.spec = spec
        self._script = script

    async def __aenter__(self) -> ScriptedProvider:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(self.spec.model)]

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[Any]:
        async for event in self._script(request):
            yield event
