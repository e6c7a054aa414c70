"""``Provider.context_length``: the context window each server type states, asked over the wire.

Servers are replaced by ``httpx.MockTransport`` handlers that answer the documented
metadata endpoints: llama.cpp ``GET /props``, LM Studio ``GET /api/v0/models``, vLLM and
OpenRouter ``GET /v1/models``, Ollama ``POST /api/show``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from providers import create_provider
from tests.unit.providers.fakes import make_spec

Routes = dict[tuple[str, str], Any]


def transport(routes: Routes, seen: list[str] | None = None) -> httpx.MockTransport:
    """Answer ``(method, path)`` with its JSON (an int: that status); anything else 404."""

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(f"{request.method} {request.url.path}")
        answer = routes.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"error": "not found"})
        if isinstance(answer, int):
            return httpx.Response(answer, text="no")
        if callable(answer):
            return httpx.Response(200, json=answer(request))
        return httpx.Response(200, json=answer)

    return httpx.MockTransport(handle)


async def length_of(wire: str, routes: Routes, **spec: Any) -> int | None:
    async with create_provider(make_spec(wire, **spec), transport=transport(routes)) as provider:
        return await provider.context_length()


# --- llama.cpp -------------------------------------------------------------------------------

LLAMA_MODELS = {
    "object": "list",
    "data": [{"id": "test-model", "object": "model", "meta": {"n_ctx_train": 4096}}],
}


async def test_llama_cpp_props_n_ctx_wins_over_configured_size() -> None:
    routes: Routes = {
        ("GET", "/v1/models"): LLAMA_MODELS,
        ("GET", "/props"): {"default_generation_settings": {"n_ctx": 512}, "total_slots": 1},
    }
    assert await length_of("openai", routes, context_size=4096) == 512


async def test_llama_cpp_top_level_n_ctx_of_newer_builds() -> None:
    routes: Routes = {("GET", "/props"): {"n_ctx": 2048, "default_generation_settings": {}}}
    assert await length_of("openai", routes) == 2048


async def test_training_length_alone_is_not_taken_as_the_window() -> None:
    # llama.cpp's /v1/models states n_ctx_train, which is not what the server runs with.
    assert await length_of("openai", {("GET", "/v1/models"): LLAMA_MODELS}) is None


# --- vLLM, OpenRouter, LM Studio ---------------------------------------------------------------


async def test_vllm_max_model_len_of_the_chosen_model() -> None:
    models = {
        "data": [
            {"id": "other", "max_model_len": 1000},
            {"id": "test-model", "max_model_len": 32768},
        ]
    }
    assert await length_of("openai", {("GET", "/v1/models"): models}) == 32768


async def test_openrouter_context_length_on_a_cloud_entry_needs_no_local_probe() -> None:
    seen: list[str] = []
    models = {"data": [{"id": "test-model", "context_length": 200000}]}
    spec = make_spec("openai", base_url="https://openrouter.ai/api/v1", locality="paid_cloud")
    async with create_provider(spec, transport=transport({}, seen)) as provider:
        assert await provider.context_length() is None
    # A cloud server is asked for its model list only, never for local servers' endpoints.
    assert seen == ["GET /api/v1/models"]
    routes: Routes = {("GET", "/api/v1/models"): models}
    cloud = {"base_url": "https://openrouter.ai/api/v1", "locality": "paid_cloud"}
    assert await length_of("openai", routes, **cloud) == 200000


async def test_lm_studio_loaded_context_length_first() -> None:
    models = {
        "data": [
            {
                "id": "test-model",
                "state": "loaded",
                "max_context_length": 131072,
                "loaded_context_length": 8192,
            }
        ]
    }
    assert await length_of("openai", {("GET", "/api/v0/models"): models}) == 8192


async def test_lm_studio_max_context_length_when_not_loaded() -> None:
    models = {"data": [{"id": "test-model", "state": "not-loaded", "max_context_length": 4096}]}
    assert await length_of("openai", {("GET", "/api/v0/models"): models}) == 4096


@pytest.mark.parametrize(
    "routes",
    [
        {},
        {("GET", "/props"): 500},
        {("GET", "/props"): {"n_ctx": "512"}},
        {("GET", "/props"): {"n_ctx": True}},
        {("GET", "/props"): ["not", "an", "object"]},
        {("GET", "/v1/models"): {"data": "nope"}},
    ],
)
async def test_servers_that_do_not_say_answer_none(routes: Routes) -> None:
    assert await length_of("openai", routes) is None


async def test_unreachable_server_answers_none_without_retries() -> None:
    calls: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ConnectError("refused", request=request)

    spec = make_spec("openai", max_retries=5)
    async with create_provider(spec, transport=httpx.MockTransport(refuse)) as provider:
        assert await provider.context_length() is None
    assert calls == ["/v1/models", "/props", "/api/v0/models"]


# --- Ollama ------------------------------------------------------------------------------------


def ollama_show(info: dict[str, Any], parameters: str = "") -> Callable[[httpx.Request], Any]:
    def answer(request: httpx.Request) -> Any:
        assert json.loads(request.content) == {"model": "test-model"}
        return {"model_info": info, "parameters": parameters, "details": {}}

    return answer


async def test_ollama_model_context_length_caps_the_configured_num_ctx() -> None:
    info = {"general.architecture": "llama", "llama.context_length": 2048}
    routes: Routes = {("POST", "/api/show"): ollama_show(info)}
    assert await length_of("ollama", routes, context_size=8192) == 2048


async def test_ollama_configured_num_ctx_when_the_model_holds_more() -> None:
    info = {"general.architecture": "qwen2", "qwen2.context_length": 32768}
    routes: Routes = {("POST", "/api/show"): ollama_show(info)}
    assert await length_of("ollama", routes, context_size=4096) == 4096


async def test_ollama_num_ctx_parameter_without_model_info() -> None:
    routes: Routes = {
        ("POST", "/api/show"): ollama_show({}, parameters="stop <eos>\nnum_ctx 1024\n")
    }
    assert await length_of("ollama", routes, context_size=4096) == 1024


async def test_ollama_without_show_answers_none() -> None:
    assert await length_of("ollama", {}) is None


async def test_anthropic_does_not_say() -> None:
    assert await length_of("anthropic", {}) is None


async def test_a_type_without_the_method_answers_none() -> None:
    from providers.base import context_length

    class OldPlugin:
        async def list_models(self) -> list[object]:
            return []

    assert await context_length(OldPlugin()) is None
    routes: Routes = {("GET", "/props"): {"n_ctx": 512}}
    spec = make_spec("openai")
    async with create_provider(spec, transport=transport(routes)) as provider:
        assert await context_length(provider, "test-model") == 512


async def test_a_server_that_never_finishes_its_answer_is_given_up_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    import providers.base

    monkeypatch.setattr(providers.base, "PROBE_SECONDS", 0.2)

    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            while True:
                await asyncio.sleep(0.05)
                yield b" "

    def stall(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Endless())

    spec = make_spec("ollama")
    async with create_provider(spec, transport=httpx.MockTransport(stall)) as provider:
        async with asyncio.timeout(5):
            assert await provider.context_length() is None
