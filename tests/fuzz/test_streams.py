"""Fuzzing the stream parsers of the providers: SSE (``openai``, ``anthropic``) and NDJSON
(``ollama``), driven through ``httpx.MockTransport`` with bodies sent in chunks.

* Cutting a body into chunks anywhere never changes what the parser makes of it: the
  same events, or the same error.
* A valid answer gives its text and reasoning back and ends with one ``FinishEvent``;
  one without its end marker is a ``ConnectionFailedError``.
* Any other body gives events ending in one ``FinishEvent``, or a ``ProviderError``;
  never another exception, and never a hang (each stream runs under a timeout).
* An error answer (any status, body and ``Retry-After``) is a ``ProviderError``, and a
  retry never waits longer than the retry policy allows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from providers import ConnectionFailedError, FinishEvent, ProviderError, ReasoningDelta, TextDelta
from providers.anthropic import AnthropicProvider
from providers.base import HTTPProvider
from providers.ollama import OllamaProvider
from providers.openai import OpenAIProvider
from tests.fuzz._profiles import FUZZ
from tests.fuzz._stats import tried
from tests.fuzz._strategies import json_values, mutated_bytes, split
from tests.unit.providers.fakes import WIRES, chat, make_spec

pytestmark = pytest.mark.fuzz

#: The classes themselves: ``create_provider`` reads package metadata on every call.
PROVIDERS: dict[str, type[HTTPProvider]] = {
    "anthropic": AnthropicProvider,
    "ollama": OllamaProvider,
    "openai": OpenAIProvider,
}
#: Seconds one stream may take; a parser that loops or waits forever fails the test.
STREAM_TIMEOUT = 10.0
TEMPLATE = "{{ system_prompt }}\n{{ prompt }}"
CONTENT_TYPES = [
    "text/event-stream",
    "text/event-stream; charset=utf-8",
    "text/event-stream; charset=latin-1",
    "text/event-stream; charset=no-such-codec",
    "application/x-ndjson",
    "application/json",
    "text/html",
    "",
]
#: Field names and values of the three wire formats, for random JSON events.
KEYS = [
    "choices", "delta", "content", "reasoning_content", "reasoning", "text", "finish_reason",
    "usage", "prompt_tokens", "completion_tokens", "error", "message", "type", "index",
    "message_start", "content_block_delta", "text_delta", "thinking_delta", "thinking",
    "message_delta", "stop_reason", "message_stop", "input_tokens", "output_tokens", "ping",
    "done", "done_reason", "response", "prompt_eval_count", "eval_count", "[DONE]", "stop",
]  # fmt: skip


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


Outcome = tuple[str, Any]


def _outcome(
    wire: str, chunks: list[bytes], *, content_type: str | None = None, template: bool = False
) -> Outcome:
    """("events", [...]) or ("error", (type name, message)) for one streamed answer."""

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {
            "content-type": WIRES[wire].content_type if content_type is None else content_type
        }
        return httpx.Response(200, headers=headers, stream=_Chunks(chunks))

    async def run() -> list[Any]:
        spec = make_spec(wire, max_retries=0, template=TEMPLATE if template else None)
        async with PROVIDERS[wire](spec, transport=httpx.MockTransport(answer)) as provider:
            return [item async for item in provider.stream_chat(chat())]

    async def bounded() -> list[Any]:
        return await asyncio.wait_for(run(), STREAM_TIMEOUT)

    try:
        events = asyncio.run(bounded())
    except ProviderError as error:
        return "error", (type(error).__name__, str(error))
    finishes = [i for i, item in enumerate(events) if isinstance(item, FinishEvent)]
    assert finishes == [len(events) - 1], f"not one FinishEvent at the end: {events}"
    return "events", events


# --- valid answers -----------------------------------------------------------------------------


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _template_answer(wire: str, texts: list[str], complete: bool) -> bytes:
    """A template-mode answer: OpenAI Completions SSE, or Ollama ``/api/generate`` NDJSON."""
    if wire == "openai":
        body = "".join(_sse({"choices": [{"index": 0, "text": text}]}) for text in texts)
        if complete:
            body += _sse({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
            body += "data: [DONE]\n\n"
        return body.encode()
    lines = [{"response": text, "done": False} for text in texts]
    if complete:
        lines.append({"response": "", "done": True, "done_reason": "stop", "eval_count": 3})
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


@st.composite
def valid_answers(draw: st.DrawFn, wire: str) -> tuple[bytes, list[str], list[str], bool, bool]:
    """(body, texts, reasoning, complete, template mode) of a well-formed answer."""
    texts = draw(st.lists(st.text(), max_size=6))
    complete = draw(st.booleans())
    if wire != "anthropic" and draw(st.booleans()):
        return _template_answer(wire, texts, complete), texts, [], complete, True
    reasoning = draw(st.lists(st.text(), max_size=3))
    body = WIRES[wire].answer(texts, reasoning=tuple(reasoning), complete=complete)
    return body, texts, reasoning, complete, False


WIRE_NAMES = sorted(WIRES)


VALID_ANSWERS = {wire: valid_answers(wire) for wire in WIRE_NAMES}


@pytest.mark.parametrize("wire", WIRE_NAMES)
@FUZZ
@given(data=st.data())
def test_valid_answers_survive_any_chunking(wire: str, data: st.DataObject) -> None:
    tried(f"{wire} stream: valid, chunked")
    body, texts, reasoning, complete, template = data.draw(VALID_ANSWERS[wire], label="answer")
    chunks = data.draw(split(body), label="chunks")
    outcome = _outcome(wire, chunks, template=template)
    assert outcome == _outcome(wire, [body], template=template)
    if not complete:
        assert outcome[0] == "error" and outcome[1][0] == ConnectionFailedError.__name__
        return
    assert outcome[0] == "events", outcome
    events = outcome[1]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "".join(texts)
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "".join(reasoning)


# --- anything else -----------------------------------------------------------------------------


def _random_events(wire: str) -> st.SearchStrategy[bytes]:
    """Bodies of well-framed events (SSE or NDJSON) carrying random JSON."""
    value = json_values(KEYS, max_leaves=12)
    if wire == "ollama":
        line = value.map(lambda v: json.dumps(v, ensure_ascii=False) + "\n")
    else:
        names = st.none() | st.sampled_from(KEYS)
        line = st.builds(lambda v, name: _sse(v, name), value, names)
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, which servers send too.
    return st.lists(line, max_size=8).map(
        lambda lines: "".join(lines).encode("utf-8", "surrogatepass")
    )


def _bodies(wire: str) -> st.SearchStrategy[bytes]:
    valid = VALID_ANSWERS[wire].map(lambda answer: answer[0])
    return st.one_of(
        st.binary(),
        _random_events(wire),
        valid.flatmap(mutated_bytes),
        st.builds(bytes.__add__, valid, _random_events(wire)),
    )


BODIES = {wire: _bodies(wire) for wire in WIRE_NAMES}


@pytest.mark.parametrize("wire", WIRE_NAMES)
@FUZZ
@given(data=st.data())
def test_any_body_gives_events_or_a_provider_error(wire: str, data: st.DataObject) -> None:
    tried(f"{wire} stream: any body, chunked")
    body = data.draw(BODIES[wire], label="body")
    content_type = data.draw(st.none() | st.sampled_from(CONTENT_TYPES), label="content type")
    template = wire != "anthropic" and data.draw(st.booleans(), label="template mode")
    chunks = data.draw(split(body), label="chunks")
    whole = _outcome(wire, [body], content_type=content_type, template=template)
    event(whole[1][0] if whole[0] == "error" else "events")  # see --hypothesis-show-statistics
    assert _outcome(wire, chunks, content_type=content_type, template=template) == whole


# --- error answers -----------------------------------------------------------------------------

RETRY_AFTER = st.one_of(
    st.none(),
    st.integers(-(10**30), 10**30).map(str),
    st.floats().map(str),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40),
    st.builds(
        "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
        st.sampled_from(["Mon", "Tue", "Xyz"]),
        st.integers(0, 99),
        st.sampled_from(["Jan", "Feb", "Foo"]),
        st.integers(-1, 10**6),
        st.integers(0, 99),
        st.integers(0, 99),
        st.integers(0, 99),
        st.one_of(
            st.sampled_from(["GMT", "UTC", "-0000", "EST"]), st.integers().map("{:+d}".format)
        ),
    ),
)


def _error_outcome(
    wire: str, status: int, body: bytes, content_type: str, retry_after: str | None
) -> tuple[ProviderError, list[float]]:
    """The error a provider raises for this answer (sent twice: one retry allowed)."""
    waits: list[float] = []

    async def record_wait(self: HTTPProvider, seconds: float) -> None:
        waits.append(seconds)

    provider_type = type("Recording", (PROVIDERS[wire],), {"sleep": record_wait})

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {b"content-type": content_type.encode()}
        if retry_after is not None:
            headers[b"retry-after"] = retry_after.encode("latin-1")  # bytes, as on the wire
        return httpx.Response(status, headers=headers, content=body)

    async def run() -> list[Any]:
        spec = make_spec(wire, max_retries=1)
        async with provider_type(spec, transport=httpx.MockTransport(answer)) as provider:
            return [item async for item in provider.stream_chat(chat())]

    async def bounded() -> list[Any]:
        return await asyncio.wait_for(run(), STREAM_TIMEOUT)

    with pytest.raises(ProviderError) as caught:
        asyncio.run(bounded())
    return caught.value, waits


ERROR_BODIES = st.one_of(
    st.binary(max_size=64),
    json_values(["error", "message", "type", "code", "detail", "param", "n_ctx"]).map(
        lambda value: json.dumps(value).encode("utf-8", "surrogatepass")
    ),
)


@pytest.mark.parametrize("wire", WIRE_NAMES)
@FUZZ
@given(
    status=st.one_of(st.integers(400, 599), st.sampled_from([429, 503, 529, 401, 404, 413])),
    body=ERROR_BODIES,
    content_type=st.sampled_from(["application/json", "text/plain", "text/html", ""]),
    retry_after=RETRY_AFTER,
)
def test_error_answers_are_provider_errors(
    wire: str, status: int, body: bytes, content_type: str, retry_after: str | None
) -> None:
    tried(f"{wire} error answer")
    error, waits = _error_outcome(wire, status, body, content_type, retry_after)
    event(type(error).__name__)  # see --hypothesis-show-statistics
    policy = PROVIDERS[wire].retry_policy
    assert all(0 <= wait <= max(policy.retry_after_cap, policy.max_delay) for wait in waits)
