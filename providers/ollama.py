"""The ``ollama`` type: Ollama's native API over newline-delimited JSON.

Chat goes to ``POST {base_url}/api/chat``; in template mode one raw prompt
goes to ``POST {base_url}/api/generate`` with ``raw: true``. Each line is a JSON
object; the last has ``done: true`` with ``done_reason`` and the token counts
``prompt_eval_count`` / ``eval_count``. Models come from ``GET /api/tags``.
``base_url`` is the server root, e.g. ``http://127.0.0.1:11434``.

The context window: every request sets ``options.num_ctx`` to the entry's
``context_size``, so the window is that, capped by what ``POST /api/show`` says the
model holds (``model_info["<arch>.context_length"]``, else a ``num_ctx`` parameter
of its Modelfile).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import httpx

from providers import embeddings
from providers.base import (
    HTTPProvider,
    WireCall,
    image_base64,
    messages_with_memory,
    normalise_finish_reason,
    positive_int,
    sampling_options,
    text_message,
)
from providers.spec import ProviderSpec
from providers.streams import aiter_ndjson
from providers.template import template_of
from providers.types import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    FinishEvent,
    ModelInfo,
    ReasoningDelta,
    TextDelta,
    Usage,
    UsageEvent,
)


def wire_message(message: ChatMessage) -> dict[str, Any]:
    """An ``/api/chat`` message; its images go in ``images`` as raw base64 (no data: prefix)."""
    wire = text_message(message)
    if message.images:
        wire["images"] = [image_base64(image) for image in message.images]
    return wire


class OllamaProvider(HTTPProvider):
    """A provider for an Ollama server's native API."""

    server_label = "Ollama server"
    not_found_hint = (
        "check `base_url` (the server root, without /v1 or /api) and that the model is "
        "pulled (`ollama pull <model>`)"
    )

    def __init__(
        self, spec: ProviderSpec, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """Set up the client; compile ``spec.template`` when the entry uses template mode."""
        self.template = template_of(spec.template, spec.name)
        super().__init__(spec, transport=transport)

    def chat_call(self, request: ChatRequest) -> WireCall:
        """``/api/chat`` for a normal entry, ``/api/generate`` with ``raw: true`` in template mode.

        ``options.num_ctx`` is the entry's ``context_size``, so Ollama loads the
        model with the context window the configuration promises.
        """
        body: dict[str, Any] = {"model": self.model_for(request), "stream": True}
        body["options"] = {
            "num_ctx": self.spec.context_size,
            **sampling_options(request, max_tokens_field="num_predict"),
        }
        if self.template is not None:
            body["prompt"] = self.template.render(request)
            body["raw"] = True
            parse = functools.partial(self._parse, field="response")
            return WireCall(f"{self.base_url}/api/generate", body, parse)
        body["messages"] = messages_with_memory(request, wire_message)
        return WireCall(
            f"{self.base_url}/api/chat", body, functools.partial(self._parse, field="message")
        )

    async def _parse(
        self, response: httpx.Response, *, field: str
    ) -> AsyncGenerator[ChatEvent, None]:
        """Events from the NDJSON lines; the stream must end with a ``done: true`` line.

        ``field`` is ``message`` (``/api/chat``: ``message.content`` and
        ``message.thinking``) or ``response`` (``/api/generate``: ``response`` and
        ``thinking`` at the top level).
        """
        async with aclosing(aiter_ndjson(response, provider=self.spec.name)) as lines:
            async for line in lines:
                if line.get("error") is not None:
                    raise self.stream_error(line)
                if field == "message":
                    message = line.get("message")
                    if message is None:
                        message = {}
                    if not isinstance(message, dict):
                        raise self.protocol_error("a `message` that is not a JSON object")
                    thinking, content = message.get("thinking"), message.get("content")
                else:
                    thinking, content = line.get("thinking"), line.get("response")
                if thinking:
                    if not isinstance(thinking, str):
                        raise self.protocol_error("`thinking` that is not a string")
                    yield ReasoningDelta(thinking)
                if content:
                    if not isinstance(content, str):
                        raise self.protocol_error("content that is not a string")
                    yield TextDelta(content)
                if line.get("done") is True:
                    usage = self._usage(line)
                    if usage is not None:
                        yield UsageEvent(usage)
                    reason = line.get("done_reason")
                    raw = reason if isinstance(reason, str) else None
                    yield FinishEvent(normalise_finish_reason(raw), raw)
                    return
        raise self.stream_cut()

    @staticmethod
    def _usage(line: dict[str, Any]) -> Usage | None:
        prompt, completion = line.get("prompt_eval_count"), line.get("eval_count")
        if not isinstance(prompt, int) and not isinstance(completion, int):
            return None
        return Usage(
            prompt_tokens=prompt if isinstance(prompt, int) else None,
            completion_tokens=completion if isinstance(completion, int) else None,
        )

    async def list_models(self) -> list[ModelInfo]:
        """``GET {base_url}/api/tags``: ``{"models": [{"name", "details": {...}}]}``."""
        payload = await self.get_json(f"{self.base_url}/api/tags")
        entries = payload.get("models") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            raise self.protocol_error("a model list without a `models` list")
        models: list[ModelInfo] = []
        for entry in entries:
            name = entry.get("name", entry.get("model")) if isinstance(entry, dict) else None
            if not isinstance(name, str):
                raise self.protocol_error("a model entry without a `name`")
            details = entry.get("details")
            models.append(
                ModelInfo(
                    id=name,
                    details={
                        key: str(value)
                        for key, value in (details.items() if isinstance(details, dict) else ())
                        if isinstance(value, str | int | float) and not isinstance(value, bool)
                    },
                )
            )
        return models

    async def capabilities(self, model: str | None = None) -> list[str] | None:
        """What ``POST {base_url}/api/show`` says ``model`` can do, e.g. ``["completion",
        "vision"]``; None when the server does not say (older Ollama, or no answer).

        Optional: pass ``"vision" in capabilities`` as ``declared`` to
        ``providers.vision.accepts_images`` when the entry sets no ``vision`` itself.
        """
        shown = await self.probe_json(
            "POST", f"{self.base_url}/api/show", json={"model": model or self.spec.model}
        )
        if not isinstance(shown, dict):
            return None
        capabilities = shown.get("capabilities")
        if not isinstance(capabilities, list):
            return None
        return [item for item in capabilities if isinstance(item, str)]

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """``POST {base_url}/api/embed`` with ``{"model", "input": [...]}`` ->
        ``{"embeddings": [[...], ...]}``, ``BATCH_SIZE`` texts a request."""

        async def request(batch: list[str]) -> list[Any]:
            payload = await embeddings.post_json(
                self,
                f"{self.base_url}/api/embed",
                {"model": model, "input": batch},
                "an embeddings answer",
            )
            vectors = payload.get("embeddings") if isinstance(payload, dict) else None
            if not isinstance(vectors, list):
                raise self.protocol_error("an embeddings answer without an `embeddings` list")
            return vectors

        return await embeddings.in_batches(self, texts, model, request)

    async def context_length(self, model: str | None = None) -> int | None:
        """The window ``model`` gets here: ``context_size`` (sent as ``num_ctx``), capped by
        the model's own length from ``POST {base_url}/api/show``; None when Ollama does not
        say (the caller then uses ``context_size`` alone)."""
        shown = await self.probe_json(
            "POST", f"{self.base_url}/api/show", json={"model": model or self.spec.model}
        )
        if not isinstance(shown, dict):
            return None
        size: int | None = None
        info = shown.get("model_info")
        if isinstance(info, dict):
            architecture = info.get("general.architecture")
            if isinstance(architecture, str):
                size = positive_int(info.get(f"{architecture}.context_length"))
            if size is None:
                size = next(
                    (
                        found
                        for key, value in info.items()
                        if key.endswith(".context_length")
                        and (found := positive_int(value)) is not None
                    ),
                    None,
                )
        if size is None:
            size = _num_ctx(shown.get("parameters"))
        if size is None:
            return None
        return min(size, self.spec.context_size)


def _num_ctx(parameters: object) -> int | None:
    """``num_ctx`` from ``/api/show``'s ``parameters`` text (``"num_ctx 8192\n..."``)."""
    if not isinstance(parameters, str):
        return None
    for line in parameters.splitlines():
        name, _, value = line.strip().partition(" ")
        if name == "num_ctx" and value.strip().isdigit():
            return positive_int(int(value.strip()))
    return None
