"""The ``openai`` type: OpenAI-compatible servers over server-sent events.

Speaks Chat Completions (``POST {base_url}/chat/completions``) and, in template
mode, Completions (``POST {base_url}/completions`` with one raw prompt). That
covers OpenAI, llama.cpp's llama-server, LM Studio, vLLM, OpenRouter, Groq and
the like; ``base_url`` conventionally ends in ``/v1``. Models come from
``GET {base_url}/models``.

The context window is asked of the server (``context_length``): vLLM states
``max_model_len`` and OpenRouter ``context_length`` in the model list; a local
llama.cpp server answers ``GET /props`` with the ``n_ctx`` it runs with, LM Studio
``GET /api/v0/models`` with ``loaded_context_length``/``max_context_length``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import httpx

from providers import embeddings
from providers.base import (
    PROGRESS,
    HTTPProvider,
    Progress,
    WireCall,
    image_base64,
    messages_with_memory,
    normalise_finish_reason,
    positive_int,
    sampling_options,
    text_message,
)
from providers.spec import Locality, ProviderSpec, is_local_url
from providers.streams import aiter_sse, decode_json
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
    """A Chat Completions message: plain ``content`` text, or with images an array of parts.

    The parts are ``{"type": "text", "text": ...}`` (left out when the text is empty)
    then one ``{"type": "image_url", "image_url": {"url": "data:<type>;base64,<data>"}}``
    per image, as OpenAI documents for vision input.
    """
    if not message.images:
        return text_message(message)
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "text": message.content})
    for image in message.images:
        url = f"data:{image.media_type};base64,{image_base64(image)}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": message.role.value, "content": parts}


class OpenAIProvider(HTTPProvider):
    """A provider for any server that speaks the OpenAI Chat Completions API."""

    server_label = "OpenAI-compatible server"
    not_found_hint = (
        "check `base_url` (OpenAI-compatible servers usually want it to end in /v1) and the "
        "model name"
    )

    def __init__(
        self, spec: ProviderSpec, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """Set up the client; compile ``spec.template`` when the entry uses template mode."""
        self.template = template_of(spec.template, spec.name)
        super().__init__(spec, transport=transport)

    def chat_call(self, request: ChatRequest) -> WireCall:
        """Chat Completions for a normal entry, Completions with a raw prompt in template mode."""
        body: dict[str, Any] = {"model": self.model_for(request), "stream": True}
        body["stream_options"] = {"include_usage": True}
        body.update(sampling_options(request))
        if self.template is not None:
            body["prompt"] = self.template.render(request)
            parse = functools.partial(self._parse, completions=True)
            return WireCall(f"{self.base_url}/completions", body, parse)
        body["messages"] = messages_with_memory(request, wire_message)
        parse = functools.partial(self._parse, completions=False)
        return WireCall(f"{self.base_url}/chat/completions", body, parse)

    async def _parse(
        self, response: httpx.Response, *, completions: bool
    ) -> AsyncGenerator[ChatEvent | Progress, None]:
        """Events from the SSE chunks; the stream must end with ``data: [DONE]``.

        Usage arrives in its own chunk after the finish reason (``include_usage``),
        so usage and finish are emitted together when the stream ends (``PROGRESS``
        when each arrives).
        """
        name = self.spec.name
        finish_reason: str | None = None
        usage: Usage | None = None
        done = False
        await self.require_event_stream(response)
        async with aclosing(aiter_sse(response)) as events:
            async for sse in events:
                data = sse.data
                if data.strip() == "[DONE]":
                    done = True
                    break
                if not data.strip():
                    continue
                chunk = decode_json(data, provider=name, what="an event")
                if not isinstance(chunk, dict):
                    raise self.protocol_error("an event that is not a JSON object")
                if sse.event == "error" or chunk.get("error") is not None:
                    raise self.stream_error(chunk)
                if (chunk_usage := chunk.get("usage")) is not None:
                    usage = self._usage(chunk_usage)
                    yield PROGRESS
                choices = chunk.get("choices", [])
                if not isinstance(choices, list):
                    raise self.protocol_error("`choices` that is not a list")
                if not choices:
                    continue
                choice = choices[0]
                if not isinstance(choice, dict):
                    raise self.protocol_error("a choice that is not a JSON object")
                for event in self._choice_events(choice, completions=completions):
                    yield event
                reason = choice.get("finish_reason")
                if reason is not None:
                    if not isinstance(reason, str):
                        raise self.protocol_error("a `finish_reason` that is not a string")
                    finish_reason = reason
                    yield PROGRESS
        if not done and finish_reason is None:
            raise self.stream_cut()
        if usage is not None:
            yield UsageEvent(usage)
        yield FinishEvent(normalise_finish_reason(finish_reason), finish_reason)

    def _choice_events(self, choice: dict[str, Any], *, completions: bool) -> list[ChatEvent]:
        if completions:
            text = choice.get("text")
            if text is None:
                return []
            if not isinstance(text, str):
                raise self.protocol_error("a `text` that is not a string")
            return [TextDelta(text)] if text else []
        delta = choice.get("delta")
        if delta is None:
            return []
        if not isinstance(delta, dict):
            raise self.protocol_error("a `delta` that is not a JSON object")
        events: list[ChatEvent] = []
        reasoning = delta.get("reasoning_content")
        if reasoning is None:
            reasoning = delta.get("reasoning")
        if reasoning is not None:
            if not isinstance(reasoning, str):
                raise self.protocol_error("reasoning that is not a string")
            if reasoning:
                events.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if content is not None:
            if not isinstance(content, str):
                raise self.protocol_error("a `content` delta that is not a string")
            if content:
                events.append(TextDelta(content))
        return events

    def _usage(self, value: Any) -> Usage:
        if not isinstance(value, dict):
            raise self.protocol_error("`usage` that is not a JSON object")
        prompt = value.get("prompt_tokens")
        completion = value.get("completion_tokens")
        return Usage(
            prompt_tokens=prompt if isinstance(prompt, int) else None,
            completion_tokens=completion if isinstance(completion, int) else None,
        )

    async def list_models(self) -> list[ModelInfo]:
        """``GET {base_url}/models``: ``{"data": [{"id", "owned_by", ...}]}``."""
        payload = await self.get_json(f"{self.base_url}/models")
        entries = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            raise self.protocol_error("a model list without a `data` list")
        models: list[ModelInfo] = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise self.protocol_error("a model entry without an `id`")
            owned_by = entry.get("owned_by")
            models.append(
                ModelInfo(
                    id=entry["id"],
                    context_size=_context_size(entry),
                    owned_by=owned_by if isinstance(owned_by, str) else None,
                )
            )
        return models

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """``POST {base_url}/embeddings`` with ``{"model", "input": [...]}``, ``BATCH_SIZE``
        texts a request; the answer's ``data[].embedding`` in ``index`` order."""

        async def request(batch: list[str]) -> list[Any]:
            payload = await embeddings.post_json(
                self,
                f"{self.base_url}/embeddings",
                {"model": model, "input": batch, "encoding_format": "float"},
                "an embeddings answer",
            )
            data = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
                raise self.protocol_error("an embeddings answer without a `data` list")
            if all(isinstance(d.get("index"), int) for d in data):
                data = sorted(data, key=lambda d: int(d["index"]))
            return [d.get("embedding") for d in data]

        return await embeddings.in_batches(self, texts, model, request)

    async def context_length(self, model: str | None = None) -> int | None:
        """The context window the server gives ``model`` (default: the spec's), or None.

        Asked in this order, each answer that says nothing passing to the next:

        1. ``GET {base_url}/models``: the entry of ``model`` with vLLM's ``max_model_len``
           or OpenRouter's ``context_length``;
        2. for a local server only (on-prem entry or local address), llama.cpp's
           ``GET {root}/props``: ``default_generation_settings.n_ctx`` (top-level
           ``n_ctx`` in newer builds), the window of one slot;
        3. likewise LM Studio's ``GET {root}/api/v0/models``: ``loaded_context_length``
           of the loaded model, else its ``max_context_length``.

        ``root`` is ``base_url`` without its ``/v1``. Failures (404, no answer, not JSON)
        count as "not said"; nothing is retried.
        """
        wanted = model or self.spec.model
        listed = await self.probe_json("GET", f"{self.base_url}/models")
        entry = _entry_of(listed, "data", wanted)
        if entry is not None:
            size = _context_size(entry)
            if size is not None:
                return size
        if not (self.spec.locality is Locality.ON_PREM or is_local_url(self.base_url)):
            return None
        root = self.base_url.removesuffix("/v1")
        props = await self.probe_json("GET", f"{root}/props")
        if isinstance(props, dict):
            settings = props.get("default_generation_settings")
            size = positive_int(props.get("n_ctx"))
            if size is None and isinstance(settings, dict):
                size = positive_int(settings.get("n_ctx"))
            if size is not None:
                return size
        studio = await self.probe_json("GET", f"{root}/api/v0/models")
        entry = _entry_of(studio, "data", wanted)
        if entry is not None:
            return positive_int(entry.get("loaded_context_length")) or positive_int(
                entry.get("max_context_length")
            )
        return None


def _entry_of(payload: Any, key: str, model: str) -> dict[str, Any] | None:
    """The entry of ``model`` in ``payload[key]`` (a list of objects with ``id``); the only
    entry when there is just one (servers that serve one model name it as they like)."""
    entries = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return None
    objects = [entry for entry in entries if isinstance(entry, dict)]
    for entry in objects:
        if entry.get("id") == model:
            return entry
    return objects[0] if len(objects) == 1 else None


def _context_size(entry: dict[str, Any]) -> int | None:
    """The context size a model entry states: vLLM's ``max_model_len`` or OpenRouter's
    ``context_length``, if any."""
    return positive_int(entry.get("max_model_len")) or positive_int(entry.get("context_length"))
