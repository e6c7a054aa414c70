"""Scripted HTTP answers in each wire format, and helpers, for the provider tests.

Bodies follow the documented formats: OpenAI Chat Completions SSE chunks,
Ollama ``/api/chat`` NDJSON lines and Anthropic Messages SSE events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from providers import ChatMessage, ChatRequest, ProviderSpec, Role, Usage

API_KEY = "sk-test-0123456789abcdefSECRET"


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event carrying ``data`` as JSON (or verbatim when a str)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n"


def ndjson(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False) + "\n"


def openai_answer(
    texts: list[str],
    *,
    reasoning: tuple[str, ...] = (),
    complete: bool = True,
) -> bytes:
    body = sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    for part in reasoning:
        body += sse({"choices": [{"index": 0, "delta": {"reasoning_content": part}}]})
    for part in texts:
        body += sse({"choices": [{"index": 0, "delta": {"content": part}}]})
    if complete:
        body += sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        body += sse({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}})
        body += "data: [DONE]\n\n"
    return body.encode()


def ollama_answer(
    texts: list[str],
    *,
    reasoning: tuple[str, ...] = (),
    complete: bool = True,
) -> bytes:
    body = ""
    for part in reasoning:
        body += ndjson(
            {
                "model": "m",
                "message": {"role": "assistant", "content": "", "thinking": part},
                "done": False,
            }
        )
    for part in texts:
        body += ndjson(
            {"model": "m", "message": {"role": "assistant", "content": part}, "done": False}
        )
    if complete:
        body += ndjson(
            {
                "model": "m",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 7,
                "eval_count": 2,
            }
        )
    return body.encode()


def anthropic_answer(
    texts: list[str],
    *,
    reasoning: tuple[str, ...] = (),
    complete: bool = True,
) -> bytes:
    body = sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "usage": {"input_tokens": 7, "output_tokens": 1},
            },
        },
        "message_start",
    )
    body += sse({"type": "ping"}, "ping")
    if reasoning:
        body += sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
            "content_block_start",
        )
        for part in reasoning:
            body += sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": part},
                },
                "content_block_delta",
            )
        body += sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "c2ln"},
            },
            "content_block_delta",
        )
        body += sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    index = 1 if reasoning else 0
    body += sse(
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        },
        "content_block_start",
    )
    for part in texts:
        body += sse(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": part},
            },
            "content_block_delta",
        )
    if complete:
        body += sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        body += sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 2},
            },
            "message_delta",
        )
        body += sse({"type": "message_stop"}, "message_stop")
    return body.encode()


@dataclass(frozen=True)
class Wire:
    """One wire format: how to configure it and what its server sends."""

    type: str
    base_url: str
    chat_path: str
    models_path: str
    content_type: str
    answer: Callable[..., bytes]
    #: A complete stream whose middle carries an in-stream error object.
    error_in_stream: bytes
    #: The server's "prompt does not fit" answer.
    context_too_long: Callable[[], httpx.Response]
    malformed: bytes
    models_payload: dict[str, Any]
    model_ids: list[str]
    usage: Usage = field(default_factory=lambda: Usage(7, 2))


WIRES = {
    "openai": Wire(
        type="openai",
        base_url="http://127.0.0.1:8080/v1",
        chat_path="/v1/chat/completions",
        models_path="/v1/models",
        content_type="text/event-stream",
        answer=openai_answer,
        error_in_stream=(
            sse({"choices": [{"index": 0, "delta": {"content": "Hel"}}]})
            + sse({"error": {"code": 500, "message": "model crashed", "type": "server_error"}})
        ).encode(),
        context_too_long=lambda: httpx.Response(
            400,
            json={
                "error": {
                    "code": 400,
                    "type": "exceed_context_size_error",
                    "n_ctx": 4096,
                    "n_prompt_tokens": 5000,
                    "message": "the request exceeds the available context size",
                }
            },
        ),
        malformed=b'data: {"choices": [{"delta": {"content": "Hel"}}]}\n\ndata: {not json\n\n',
        models_payload={
            "object": "list",
            "data": [
                {"id": "qwen3-0.6b", "object": "model", "owned_by": "llamacpp", "created": 1},
                {"id": "openrouter/x", "object": "model", "context_length": 32768},
            ],
        },
        model_ids=["qwen3-0.6b", "openrouter/x"],
    ),
    "ollama": Wire(
        type="ollama",
        base_url="http://127.0.0.1:11434",
        chat_path="/api/chat",
        models_path="/api/tags",
        content_type="application/x-ndjson",
        answer=ollama_answer,
        error_in_stream=(
            ndjson(
                {"model": "m", "message": {"role": "assistant", "content": "Hel"}, "done": False}
            )
            + ndjson({"error": "an unknown error was encountered while running the model"})
        ).encode(),
        context_too_long=lambda: httpx.Response(
            400, json={"error": "the input length exceeds the context length"}
        ),
        malformed=ndjson({"message": {"content": "Hel"}, "done": False}).encode() + b"{not json\n",
        models_payload={
            "models": [
                {
                    "name": "llama3.2:1b",
                    "model": "llama3.2:1b",
                    "size": 1,
                    "details": {
                        "family": "llama",
                        "parameter_size": "1.2B",
                        "quantization_level": "Q8_0",
                        "families": ["llama"],
                    },
                },
            ]
        },
        model_ids=["llama3.2:1b"],
    ),
    "anthropic": Wire(
        type="anthropic",
        base_url="https://api.anthropic.com",
        chat_path="/v1/messages",
        models_path="/v1/models",
        content_type="text/event-stream",
        answer=anthropic_answer,
        error_in_stream=(
            sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hel"},
                },
                "content_block_delta",
            )
            + sse({"type": "error", "error": {"type": "api_error", "message": "Internal"}}, "error")
        ).encode(),
        context_too_long=lambda: httpx.Response(
            400,
            json={
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000 maximum",
                },
            },
        ),
        malformed=b'event: ping\ndata: {"type": "ping"}\n\nevent: message_start\ndata: [oops\n\n',
        models_payload={
            "data": [
                {
                    "type": "model",
                    "id": "claude-sonnet-4-5",
                    "display_name": "Claude Sonnet 4.5",
                    "created_at": "2025-09-29T00:00:00Z",
                },
            ],
            "has_more": False,
            "first_id": "claude-sonnet-4-5",
            "last_id": "claude-sonnet-4-5",
        },
        model_ids=["claude-sonnet-4-5"],
    ),
}


def make_spec(wire_type: str, base_url: str | None = None, **overrides: Any) -> ProviderSpec:
    """A spec for ``wire_type`` with a test API key and fast timeouts."""
    values: dict[str, Any] = {
        "name": f"test-{wire_type}",
        "type": wire_type,
        "base_url": base_url
        or (WIRES[wire_type].base_url if wire_type in WIRES else "http://127.0.0.1:9"),
        "model": "test-model",
        "api_key": API_KEY,
        "timeout": 5.0,
        "max_retries": 2,
    }
    values.update(overrides)
    return ProviderSpec(**values)


def chat(
    text: str = "Hello?", *, system: str | None = "Be brief.", memory: str = ""
) -> ChatRequest:
    messages = [ChatMessage(role=Role.SYSTEM, content=system)] if system else []
    messages.append(ChatMessage(role=Role.USER, content=text))
    return ChatRequest(messages=messages, memory=memory)


class ScriptedStream(httpx.AsyncByteStream):
    """A response body sent in ``chunks``, then failing, hanging or ending; records ``aclose``."""

    def __init__(
        self,
        chunks: list[bytes],
        *,
        then: BaseException | None = None,
        hang: bool = False,
    ) -> None:
        self.chunks = chunks
        self.then = then
        self.hang = hang
        self.closed = False
        self.hanging = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.then is not None:
            raise self.then
        if self.hang:
            self.hanging.set()
            await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True


def stream_response(
    wire: Wire, stream: ScriptedStream | bytes, status: int = 200
) -> httpx.Response:
    """A response with ``wire``'s content type and ``stream`` as body."""
    headers = {"content-type": wire.content_type}
    if isinstance(stream, bytes):
        return httpx.Response(status, headers=headers, content=stream)
    return httpx.Response(status, headers=headers, stream=stream)


class Server:
    """A scripted server: answers requests in order, each answer once, and records them.

    An answer is a response, an exception to raise, or a callable taking the
    request (use a callable when the same kind of answer is needed again).
    """

    def __init__(self, *answers: httpx.Response | BaseException | Callable[..., Any]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.answers, f"unexpected request {request.method} {request.url}"
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            result: httpx.Response = answer(request)
            return result
        return answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def json_bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


async def collect(provider: Any, request: ChatRequest | None = None) -> list[Any]:
    """All events of one chat stream."""
    return [event async for event in provider.stream_chat(request or chat())]
