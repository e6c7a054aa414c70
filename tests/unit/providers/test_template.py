"""Template mode: rendering, and the raw-prompt endpoints of the openai and ollama types."""

from __future__ import annotations

import httpx
import pytest

from providers import (
    ChatMessage,
    ChatRequest,
    FinishEvent,
    PromptTemplateError,
    ProviderConfigError,
    Role,
    TextDelta,
    Usage,
    UsageEvent,
    create_provider,
)
from providers.template import PromptTemplate, template_variables
from tests.unit.providers.fakes import Server, collect, make_spec, ndjson, sse

CHATML = (
    "{% if system_prompt %}<|im_start|>system\n{{ system_prompt }}"
    "{% if memory %}\n\nMemory: {{ memory }}{% endif %}<|im_end|>\n{% endif %}"
    "{% for m in history if m.role != 'system' %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "<|im_start|>user\n{{ prompt }}<|im_end|>\n<|im_start|>assistant\n"
)

CONVERSATION = ChatRequest(
    messages=[
        ChatMessage(role=Role.SYSTEM, content="Be brief."),
        ChatMessage(role=Role.USER, content="Hi"),
        ChatMessage(role=Role.ASSISTANT, content="Hello."),
        ChatMessage(role=Role.USER, content="Weather?"),
    ],
    memory="Lives in Oslo",
    max_tokens=20,
    stop=["<|im_end|>"],
)

RENDERED = (
    "<|im_start|>system\nBe brief.\n\nMemory: Lives in Oslo<|im_end|>\n"
    "<|im_start|>user\nHi<|im_end|>\n"
    "<|im_start|>assistant\nHello.<|im_end|>\n"
    "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n"
)


def test_variables() -> None:
    variables = template_variables(CONVERSATION)
    assert variables["system_prompt"] == "Be brief."
    assert variables["memory"] == "Lives in Oslo"
    assert variables["prompt"] == "Weather?"
    assert variables["history"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
    assert len(variables["messages"]) == 4
    assert variables["messages"][-1] == {"role": "user", "content": "Weather?"}


def test_variables_without_a_user_message() -> None:
    request = ChatRequest(messages=[ChatMessage(role=Role.SYSTEM, content="S")])
    variables = template_variables(request)
    assert variables["prompt"] == ""
    assert variables["history"] == [{"role": "system", "content": "S"}]


def test_render() -> None:
    assert PromptTemplate(CHATML).render(CONVERSATION) == RENDERED


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(PromptTemplateError, match="line 2") as info:
        PromptTemplate("ok\n{% if %}\n", provider="local")
    assert info.value.line == 2
    assert str(info.value).startswith("local: ")


def test_undefined_variable_names_the_line() -> None:
    template = PromptTemplate("{{ prompt }}\n{{ user_name }}\n")
    with pytest.raises(PromptTemplateError, match=r"line 2.*'user_name' is undefined") as info:
        template.render(CONVERSATION)
    assert info.value.line == 2


def test_sandbox_refuses_mutation_and_internals() -> None:
    with pytest.raises(PromptTemplateError, match="unsafe"):
        PromptTemplate("{{ messages.append(1) }}").render(CONVERSATION)
    with pytest.raises(PromptTemplateError):
        PromptTemplate("{{ prompt.__class__.__mro__ }}").render(CONVERSATION)


def test_errors_raised_by_template_code_are_template_errors() -> None:
    with pytest.raises(PromptTemplateError, match="line 1"):
        PromptTemplate("{{ 1 // 0 }}").render(CONVERSATION)


def test_syntax_error_is_raised_at_creation() -> None:
    with pytest.raises(PromptTemplateError) as info:
        create_provider(make_spec("openai", template="{% for %}"))
    assert isinstance(info.value, ProviderConfigError)
    assert isinstance(info.value, ValueError)


async def test_openai_template_mode_uses_completions() -> None:
    body = (
        sse({"choices": [{"index": 0, "text": "Sunny"}]})
        + sse({"choices": [{"index": 0, "text": ".", "finish_reason": "stop"}]})
        + sse({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 2}})
        + "data: [DONE]\n\n"
    )
    server = Server(
        httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())
    )
    spec = make_spec("openai", template=CHATML)
    async with create_provider(spec, transport=server.transport) as provider:
        events = await collect(provider, CONVERSATION)
    assert events == [
        TextDelta("Sunny"),
        TextDelta("."),
        UsageEvent(Usage(30, 2)),
        FinishEvent("stop", "stop"),
    ]
    assert server.requests[0].url.path == "/v1/completions"
    assert server.json_bodies()[0] == {
        "model": "test-model",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 20,
        "stop": ["<|im_end|>"],
        "prompt": RENDERED,
    }


async def test_ollama_template_mode_uses_raw_generate() -> None:
    body = (
        ndjson({"model": "m", "response": "Sunny", "done": False})
        + ndjson({"model": "m", "thinking": "hm", "response": "", "done": False})
        + ndjson(
            {"model": "m", "response": "", "done": True, "done_reason": "stop",
             "prompt_eval_count": 30, "eval_count": 1}
        )
    )  # fmt: skip
    server = Server(
        httpx.Response(200, headers={"content-type": "application/x-ndjson"}, content=body)
    )
    spec = make_spec("ollama", template=CHATML)
    async with create_provider(spec, transport=server.transport) as provider:
        events = await collect(provider, CONVERSATION)
    assert [type(e).__name__ for e in events] == [
        "TextDelta",
        "ReasoningDelta",
        "UsageEvent",
        "FinishEvent",
    ]
    assert server.requests[0].url.path == "/api/generate"
    sent = server.json_bodies()[0]
    assert sent["raw"] is True
    assert sent["prompt"] == RENDERED
    assert sent["options"]["num_predict"] == 20
    assert "messages" not in sent


async def test_render_error_is_raised_from_the_stream_before_any_request() -> None:
    server = Server()
    spec = make_spec("openai", template="{{ nope }}")
    async with create_provider(spec, transport=server.transport) as provider:
        with pytest.raises(PromptTemplateError, match="line 1"):
            await collect(provider, CONVERSATION)
    assert server.requests == []


async def test_blank_template_means_chat_mode() -> None:
    body = sse({"choices": [{"delta": {"content": "a"}, "finish_reason": "stop"}]})
    server = Server(
        httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())
    )
    spec = make_spec("openai", template="  ")
    async with create_provider(spec, transport=server.transport) as provider:
        await collect(provider, CONVERSATION)
    assert server.requests[0].url.path == "/v1/chat/completions"
