"""A provider whose answer is whatever a script yields: for service, UI and benchmark
tests that need exact control over the stream (timing, errors, cuts) without a server.

* ``ScriptedProvider(spec, script)``: one provider; ``stream_chat`` yields what the script
  yields for the request.
* ``ScriptedModel``: a provider factory (``Session(..., provider_factory=model)``) standing
  in for the small local model the Qt tier used to need llama-server for. By default it
  answers like that model does on the wire: word-sized text deltas a few milliseconds
  apart, then usage, then a finish; one token per UTF-8 byte; a prompt larger than
  ``context_size`` refused with ``ContextTooLongError``; ``max_tokens`` cuts the answer
  (finish ``length``). Set ``script`` for answers of a test's own (markdown, errors,
  endless streams for Stop); title requests go to ``title_script``.
* Scripts: ``answer(*pieces)``, ``endless(piece)``, ``failing(error, *pieces)``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

from providers import (
    ChatRequest,
    ContextTooLongError,
    FinishEvent,
    ModelInfo,
    ProviderError,
    ProviderSpec,
    TextDelta,
    Usage,
    UsageEvent,
)

Script = Callable[[ChatRequest], AsyncIterator[Any]]

# Framing tokens per message, as a chat template adds them.
MESSAGE_TOKENS = 4

DEFAULT_ANSWER = (
    "Here is a short answer. Zebrafish are small freshwater fish from South Asia; "
    "they are easy to keep, breed quickly, and their embryos are transparent, which is "
    "why so many laboratories study them.\n\n"
    "Ask again if you want more detail on any of this."
)
DEFAULT_TITLE = "Small freshwater fish"


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


def words(text: str) -> list[str]:
    """``text`` cut into word-sized deltas (each word with the space after it)."""
    return [piece for piece in re.findall(r"\S*\s*", text) if piece]


def answer(*pieces: str, delay: float = 0.0) -> Script:
    """Yield each piece as a text delta (``delay`` seconds before each), usage, finish."""

    async def script(_request: ChatRequest) -> AsyncIterator[Any]:
        for piece in pieces:
            if delay:
                await asyncio.sleep(delay)
            yield TextDelta(piece)
        yield UsageEvent(Usage(None, len(pieces)))
        yield FinishEvent("stop")

    return script


def endless(piece: str = "more words ", delay: float = 0.005) -> Script:
    """Yield ``piece`` every ``delay`` seconds until the consumer stops (for Stop)."""

    async def script(_request: ChatRequest) -> AsyncIterator[Any]:
        while True:
            await asyncio.sleep(delay)
            yield TextDelta(piece)

    return script


def failing(error: ProviderError, *pieces: str) -> Script:
    """Yield ``pieces``, then raise ``error`` (a server falling over mid-answer)."""

    async def script(_request: ChatRequest) -> AsyncIterator[Any]:
        for piece in pieces:
            yield TextDelta(piece)
        raise error

    return script


def is_title_request(request: ChatRequest) -> bool:
    """Whether ``request`` is the chat service's "write a title" request."""
    return bool(request.messages) and "title of at most" in request.messages[-1].content


def prompt_tokens(request: ChatRequest) -> int:
    """The request's size in tokens of the tiny test model (one per UTF-8 byte)."""
    size = sum(len(m.content.encode("utf-8")) + MESSAGE_TOKENS for m in request.messages)
    return size + len(request.memory.encode("utf-8"))


class ScriptedModel:
    """A provider factory whose providers all answer from this one model.

    ``requests`` records ``(provider name, request)`` of every call, titles included.
    """

    def __init__(
        self,
        *,
        text: str = DEFAULT_ANSWER,
        title: str = DEFAULT_TITLE,
        context_size: int | None = None,
        delay: float = 0.004,
    ) -> None:
        self.text = text
        self.context_size = context_size
        self.delay = delay
        self.script: Script = self.local_answer
        self.title_script: Script = answer(*words(title))
        self.requests: list[tuple[str, ChatRequest]] = []

    def __call__(self, spec: ProviderSpec) -> ScriptedProvider:
        def choose(request: ChatRequest) -> AsyncIterator[Any]:
            self.requests.append((spec.name, request))
            script = self.title_script if is_title_request(request) else self.script
            return script(request)

        return ScriptedProvider(spec, choose)

    async def local_answer(self, request: ChatRequest) -> AsyncIterator[Any]:
        """``text`` as a small local model streams it (see the module docstring)."""
        prompt = prompt_tokens(request)
        if self.context_size is not None and prompt > self.context_size:
            raise ContextTooLongError(
                f"the request exceeds the available context size ({prompt} tokens, "
                f"context {self.context_size})",
                status=400,
            )
        budget = request.max_tokens
        sent = 0
        finish = "stop"
        for piece in words(self.text):
            if budget is not None and sent + len(piece.encode("utf-8")) > budget:
                piece = piece.encode("utf-8")[: budget - sent].decode("utf-8", "ignore")
                finish = "length"
            if self.delay:
                await asyncio.sleep(self.delay)
            if piece:
                sent += len(piece.encode("utf-8"))
                yield TextDelta(piece)
            if finish == "length":
                break
        yield UsageEvent(Usage(prompt, sent))
        yield FinishEvent(finish)
