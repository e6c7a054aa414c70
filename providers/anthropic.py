"""The ``anthropic`` type: Anthropic's Messages API over server-sent events.

``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``;
the system prompt (with the chat's memory) goes in the top-level ``system``
field. The stream is ``message_start`` (input tokens), ``content_block_start``,
``content_block_delta`` (``text_delta`` / ``thinking_delta``),
``content_block_stop``, ``message_delta`` (stop reason, output tokens) and
``message_stop``, with ``ping`` and ``error`` events anywhere; unknown event
types are ignored, as Anthropic asks. Models come from ``GET /v1/models``.
``base_url`` is the API root, e.g. ``https://api.anthropic.com``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, ClassVar

import httpx

from providers.base import (
    PROGRESS,
    HTTPProvider,
    Progress,
    WireCall,
    fold_memory,
    image_base64,
    normalise_finish_reason,
    split_system,
)
from providers.errors import ProviderConfigError
from providers.spec import ProviderSpec
from providers.streams import aiter_sse, decode_json
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

ANTHROPIC_VERSION = "2023-06-01"


def wire_message(message: ChatMessage) -> dict[str, Any]:
    """A Messages API message: plain ``content`` text, or with images a list of blocks.

    One ``{"type": "image", "source": {"type": "base64", "media_type": ..., "data": ...}}``
    block per image, then the ``{"type": "text", "text": ...}`` block (left out when
    the text is empty: the API refuses empty text blocks). Images first is the order
    Anthropic recommends.
    """
    if not message.images:
        return {"role": message.role.value, "content": message.content}
    blocks: list[dict[str, Any]] = [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": image.media_type,
                "data": image_base64(image),
            },
        }
        for image in message.images
    ]
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    return {"role": message.role.value, "content": blocks}


class AnthropicProvider(HTTPProvider):
    """A provider for Anthropic's Messages API."""

    server_label = "Anthropic API"
    not_found_hint = "check `base_url` (the API root, without /v1) and the model name"
    # 529 is Anthropic's "overloaded"; like 503 it is safe to retry before the first event.
    retry_statuses = frozenset({429, 503, 529})

    #: ``max_tokens`` is required by the Messages API; this is sent when the request has none.
    default_max_tokens: ClassVar[int] = 4096
    #: Most models listed per page of ``GET /v1/models``.
    models_page_size: ClassVar[int] = 1000

    def __init__(
        self, spec: ProviderSpec, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """Set up the client; refuse template mode, which the Messages API cannot do."""
        if spec.template is not None and spec.template.strip():
            raise ProviderConfigError(
                "type anthropic cannot use `template`: the Messages API takes messages, not "
                "one raw prompt. Remove `template` from this entry, or use type openai or "
                "ollama with a server that accepts raw prompts.",
                provider=spec.name,
            )
        super().__init__(spec, transport=transport)

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        """``x-api-key`` and the API version header."""
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def chat_call(self, request: ChatRequest) -> WireCall:
        """The Messages API request; system messages and memory go in ``system``."""
        system, rest = split_system(request.messages)
        system = fold_memory(system, request.memory)
        body: dict[str, Any] = {
            "model": self.model_for(request),
            "max_tokens": request.max_tokens or self.default_max_tokens,
            "messages": [wire_message(m) for m in rest],
            "stream": True,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, 1.0)  # Anthropic's range is 0..1
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        return WireCall(f"{self.base_url}/v1/messages", body, self._parse)

    async def _parse(self, response: httpx.Response) -> AsyncGenerator[ChatEvent | Progress, None]:
        """Events from the Messages stream; it must end with ``message_stop``.

        Token counts and the stop reason are delivered at ``message_stop``
        (``PROGRESS`` when they arrive); ``ping`` events are keep-alives.
        """
        name = self.spec.name
        input_tokens: int | None = None
        output_tokens: int | None = None
        stop_reason: str | None = None
        await self.require_event_stream(response)
        async with aclosing(aiter_sse(response)) as events:
            async for sse in events:
                if not sse.data.strip():
                    continue
                data = decode_json(sse.data, provider=name, what="an event")
                if not isinstance(data, dict):
                    raise self.protocol_error("an event that is not a JSON object")
                kind = data.get("type", sse.event)
                if kind == "error":
                    raise self.stream_error(data)
                if kind == "message_start":
                    usage = _object(data.get("message")).get("usage")
                    input_tokens = _count(_object(usage).get("input_tokens"), input_tokens)
                    output_tokens = _count(_object(usage).get("output_tokens"), output_tokens)
                    yield PROGRESS
                elif kind == "content_block_delta":
                    event = self._delta_event(data.get("delta"))
                    if event is not None:
                        yield event
                elif kind == "message_delta":
                    reason = _object(data.get("delta")).get("stop_reason")
                    if isinstance(reason, str):
                        stop_reason = reason
                    usage = _object(data.get("usage"))
                    input_tokens = _count(usage.get("input_tokens"), input_tokens)
                    output_tokens = _count(usage.get("output_tokens"), output_tokens)
                    yield PROGRESS
                elif kind == "message_stop":
                    if input_tokens is not None or output_tokens is not None:
                        yield UsageEvent(Usage(input_tokens, output_tokens))
                    yield FinishEvent(normalise_finish_reason(stop_reason), stop_reason)
                    return
        raise self.stream_cut()

    def _delta_event(self, delta: Any) -> ChatEvent | None:
        if not isinstance(delta, dict):
            raise self.protocol_error("a `content_block_delta` without a `delta` object")
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if not isinstance(text, str):
                raise self.protocol_error("a `text_delta` without `text`")
            return TextDelta(text) if text else None
        if kind == "thinking_delta":
            thinking = delta.get("thinking")
            if not isinstance(thinking, str):
                raise self.protocol_error("a `thinking_delta` without `thinking`")
            return ReasoningDelta(thinking) if thinking else None
        # signature_delta, input_json_delta, citations_delta: nothing to show as text.
        return None

    async def list_models(self) -> list[ModelInfo]:
        """``GET {base_url}/v1/models``, following ``has_more`` / ``last_id`` pages."""
        models: list[ModelInfo] = []
        params = {"limit": str(self.models_page_size)}
        while True:
            payload = await self.get_json(f"{self.base_url}/v1/models", params=params)
            entries = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(entries, list):
                raise self.protocol_error("a model list without a `data` list")
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                    raise self.protocol_error("a model entry without an `id`")
                display_name = entry.get("display_name")
                details = {"display_name": display_name} if isinstance(display_name, str) else {}
                models.append(ModelInfo(id=entry["id"], owned_by="anthropic", details=details))
            last_id = payload.get("last_id")
            if payload.get("has_more") is not True or not isinstance(last_id, str) or not entries:
                return models
            params = {"limit": str(self.models_page_size), "after_id": last_id}


def _object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (for optional sub-objects)."""
    return value if isinstance(value, dict) else {}


def _count(value: Any, previous: int | None) -> int | None:
    """A token count if ``value`` is one, else what we had."""
    return value if isinstance(value, int) and not isinstance(value, bool) else previous
