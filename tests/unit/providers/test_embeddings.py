"""``embed``: embeddings over the OpenAI-compatible wire (``POST /v1/embeddings``) and
Ollama's (``POST /api/embed``), against their documented request and answer shapes
(``httpx.MockTransport``): batching, order, errors, malformed answers; Anthropic has none."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from providers import create_provider
from providers.embeddings import BATCH_SIZE, SupportsEmbeddings
from providers.errors import AuthError, ProtocolError, ProviderConfigError, ServerError
from tests.unit.providers.fakes import make_spec

Handler = Callable[[dict[str, Any]], httpx.Response]


def recording(handler: Handler, seen: list[tuple[str, dict[str, Any]]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((f"{request.method} {request.url.path}", body))
        return handler(body)

    return httpx.MockTransport(handle)


def openai_answer(body: dict[str, Any]) -> httpx.Response:
    """The documented shape; entries deliberately out of ``index`` order."""
    data = [
        {"object": "embedding", "index": i, "embedding": [float(len(text)), float(i)]}
        for i, text in enumerate(body["input"])
    ]
    return httpx.Response(
        200,
        json={"object": "list", "data": data[::-1], "model": body["model"], "usage": {}},
    )


def ollama_answer(body: dict[str, Any]) -> httpx.Response:
    vectors = [[float(len(text)), 1.0] for text in body["input"]]
    return httpx.Response(200, json={"model": body["model"], "embeddings": vectors})


async def embed(wire: str, handler: Handler, texts: list[str], **spec: Any) -> Any:
    seen: list[tuple[str, dict[str, Any]]] = []
    provider = create_provider(make_spec(wire, **spec), transport=recording(handler, seen))
    async with provider:
        assert isinstance(provider, SupportsEmbeddings)
        return await provider.embed(texts, "embed-model"), seen


async def test_openai_wire_posts_documented_request_and_keeps_order() -> None:
    texts = ["a", "bb", "ccc"]
    vectors, seen = await embed("openai", openai_answer, texts)
    assert vectors == [[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]
    ((route, body),) = seen
    assert route == "POST /v1/embeddings"
    assert body == {"model": "embed-model", "input": texts, "encoding_format": "float"}


async def test_ollama_wire_posts_api_embed() -> None:
    vectors, seen = await embed("ollama", ollama_answer, ["one", "three"])
    assert vectors == [[3.0, 1.0], [5.0, 1.0]]
    ((route, body),) = seen
    assert route == "POST /api/embed"
    assert body == {"model": "embed-model", "input": ["one", "three"]}


@pytest.mark.parametrize(("wire", "answer"), [("openai", openai_answer), ("ollama", ollama_answer)])
async def test_inputs_go_in_batches(wire: str, answer: Handler) -> None:
    texts = [f"text {i}" for i in range(BATCH_SIZE * 2 + 5)]
    vectors, seen = await embed(wire, answer, texts)
    assert [len(body["input"]) for _, body in seen] == [BATCH_SIZE, BATCH_SIZE, 5]
    assert len(vectors) == len(texts)
    assert vectors[-1][0] == float(len(texts[-1]))


async def test_anthropic_has_no_embeddings() -> None:
    provider = create_provider(make_spec("anthropic"))
    async with provider:
        assert not isinstance(provider, SupportsEmbeddings)


@pytest.mark.parametrize("wire", ["openai", "ollama"])
async def test_http_errors_are_provider_errors(wire: str, sleeps: list[float]) -> None:
    def unauthorised(body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "bad key"}})

    def broken(body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "model does not embed"}})

    with pytest.raises(AuthError):
        await embed(wire, unauthorised, ["x"])
    with pytest.raises(ServerError, match="model does not embed"):
        await embed(wire, broken, ["x"])


MALFORMED_OPENAI: list[Any] = [
    {"object": "list"},
    {"data": "nope"},
    {"data": [{"index": 0, "embedding": "abc"}]},
    {"data": [{"index": 0, "embedding": []}]},
    {"data": [{"index": 0, "embedding": [1.0, True]}]},
    {"data": []},
    [1, 2],
]


@pytest.mark.parametrize("payload", MALFORMED_OPENAI)
async def test_malformed_openai_answers_are_protocol_errors(payload: Any) -> None:
    with pytest.raises(ProtocolError, match="documented format"):
        await embed("openai", lambda body: httpx.Response(200, json=payload), ["x"])


MALFORMED_OLLAMA: list[Any] = [
    {"embedding": [1.0]},
    {"embeddings": [[1.0], [2.0]]},
    {"embeddings": [["x"]]},
    {"embeddings": [[1.0, 2.0], [1.0]]},
]


@pytest.mark.parametrize("payload", MALFORMED_OLLAMA)
async def test_malformed_ollama_answers_are_protocol_errors(payload: Any) -> None:
    texts = ["x", "y"] if payload == MALFORMED_OLLAMA[3] else ["x"]
    with pytest.raises(ProtocolError, match="documented format"):
        await embed("ollama", lambda body: httpx.Response(200, json=payload), texts)


async def test_body_that_is_not_json_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not valid JSON"):
        await embed("openai", lambda body: httpx.Response(200, text="<html>"), ["x"])


async def test_no_model_is_a_config_error_before_any_request() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    provider = create_provider(make_spec("openai"), transport=recording(openai_answer, seen))
    async with provider:
        assert isinstance(provider, SupportsEmbeddings)
        with pytest.raises(ProviderConfigError, match="embedding_model"):
            await provider.embed(["x"], "")
    assert seen == []
