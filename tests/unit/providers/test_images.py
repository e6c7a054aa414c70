"""Images in chat requests: each wire format's documented shape, and the vision check.

No vision model runs here, so the request bodies are compared with the shapes the
vendors document (OpenAI ``image_url`` data URIs, Ollama ``images``, Anthropic
``image`` blocks), recorded through ``httpx.MockTransport``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pydantic
import pytest

from providers import (
    ChatMessage,
    ChatRequest,
    ImageInput,
    ImagesNotSupportedError,
    ProviderConfigError,
    Role,
    accepts_images,
    create_provider,
)
from providers.ollama import OllamaProvider
from tests.unit.providers.fakes import WIRES, Server, collect, make_spec, stream_response

PNG = b"\x89PNG\r\n\x1a\n-fake-png-\x00\xff"
JPEG = b"\xff\xd8\xff\xe0-fake-jpeg-\x00"
PNG_B64 = base64.b64encode(PNG).decode()
JPEG_B64 = base64.b64encode(JPEG).decode()

#: A model each wire format knows to accept images.
VISION_MODEL = {"openai": "gpt-4o", "ollama": "llava:13b", "anthropic": "claude-sonnet-4-5"}

CHAT_PATH = {"openai": "/v1/chat/completions", "ollama": "/api/chat", "anthropic": "/v1/messages"}


def rich_request(*images: ImageInput, model: str | None = None) -> ChatRequest:
    """System prompt, memory, history, sampling options, and the last user message."""
    return ChatRequest(
        messages=[
            ChatMessage(role=Role.SYSTEM, content="Be brief."),
            ChatMessage(role=Role.USER, content="Hi"),
            ChatMessage(role=Role.ASSISTANT, content="Hello."),
            ChatMessage(role=Role.USER, content="What is this?", images=list(images)),
        ],
        memory="Likes cats.",
        max_tokens=100,
        temperature=0.5,
        stop=["END"],
        model=model,
    )


async def sent_body(wire_type: str, request: ChatRequest, **spec: Any) -> Any:
    """The JSON body the provider POSTs for ``request`` (answered by a complete stream)."""
    wire = WIRES[wire_type]
    server = Server(stream_response(wire, wire.answer(["ok"])))
    async with create_provider(
        make_spec(wire_type, model="m", max_retries=0, **spec), transport=server.transport
    ) as provider:
        await collect(provider, request)
    assert len(server.requests) == 1
    assert server.requests[0].url.path == CHAT_PATH[wire_type]
    return server.json_bodies()[0]


# --- text-only requests are unchanged --------------------------------------------------------

# The bodies these providers sent for ``rich_request()`` before images existed.
HISTORY = [
    {"role": "system", "content": "Be brief.\n\nMemory:\nLikes cats."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
]
TEXT_ONLY_BODIES: dict[str, Any] = {
    "openai": {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 100,
        "temperature": 0.5,
        "stop": ["END"],
        "messages": [*HISTORY, {"role": "user", "content": "What is this?"}],
    },
    "ollama": {
        "model": "m",
        "stream": True,
        "options": {"num_ctx": 4096, "num_predict": 100, "temperature": 0.5, "stop": ["END"]},
        "messages": [*HISTORY, {"role": "user", "content": "What is this?"}],
    },
    "anthropic": {
        "model": "m",
        "max_tokens": 100,
        "messages": [*HISTORY[1:], {"role": "user", "content": "What is this?"}],
        "stream": True,
        "system": "Be brief.\n\nMemory:\nLikes cats.",
        "temperature": 0.5,
        "stop_sequences": ["END"],
    },
}


@pytest.mark.parametrize("wire_type", sorted(WIRES))
async def test_a_text_only_request_is_byte_for_byte_what_it_was(wire_type: str) -> None:
    wire = WIRES[wire_type]
    server = Server(stream_response(wire, wire.answer(["ok"])))
    async with create_provider(
        make_spec(wire_type, model="m", max_retries=0), transport=server.transport
    ) as provider:
        await collect(provider, rich_request())
    assert server.json_bodies()[0] == TEXT_ONLY_BODIES[wire_type]
    # Text-only requests need no vision model: "m" is not known to accept images.
    assert accepts_images(wire_type, "m") is None


# --- each wire's documented image shape ------------------------------------------------------


def with_last_user(wire_type: str, last: dict[str, Any], model: str) -> dict[str, Any]:
    body = dict(TEXT_ONLY_BODIES[wire_type], model=model)
    body["messages"] = [*body["messages"][:-1], last]
    return body


async def test_openai_sends_text_then_image_url_data_uris() -> None:
    one = await sent_body(
        "openai", rich_request(ImageInput(media_type="image/png", data=PNG), model="gpt-4o")
    )
    assert one == with_last_user(
        "openai",
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            ],
        },
        "gpt-4o",
    )


async def test_openai_two_images_in_order() -> None:
    images = (
        ImageInput(media_type="image/png", data=PNG),
        ImageInput(media_type="image/jpeg", data=JPEG),
    )
    body = await sent_body("openai", rich_request(*images, model="gpt-4.1-mini"))
    assert body == with_last_user(
        "openai",
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/jpeg;base64,{JPEG_B64}"},
                },
            ],
        },
        "gpt-4.1-mini",
    )


async def test_ollama_sends_raw_base64_in_images_with_content_unchanged() -> None:
    one = await sent_body(
        "ollama", rich_request(ImageInput(media_type="image/png", data=PNG), model="llava:13b")
    )
    assert one == with_last_user(
        "ollama",
        {"role": "user", "content": "What is this?", "images": [PNG_B64]},
        "llava:13b",
    )
    two = await sent_body(
        "ollama",
        rich_request(
            ImageInput(media_type="image/png", data=PNG),
            ImageInput(media_type="image/jpeg", data=JPEG),
            model="qwen2.5vl:7b",
        ),
    )
    assert two["messages"][-1] == {
        "role": "user",
        "content": "What is this?",
        "images": [PNG_B64, JPEG_B64],
    }
    assert not any(image.startswith("data:") for image in two["messages"][-1]["images"])


async def test_anthropic_sends_base64_image_blocks_then_the_text_block() -> None:
    one = await sent_body(
        "anthropic",
        rich_request(ImageInput(media_type="image/webp", data=PNG), model="claude-3-5-haiku"),
    )
    webp_block = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/webp", "data": PNG_B64},
    }
    text_block = {"type": "text", "text": "What is this?"}
    assert one == with_last_user(
        "anthropic", {"role": "user", "content": [webp_block, text_block]}, "claude-3-5-haiku"
    )
    two = await sent_body(
        "anthropic",
        rich_request(
            ImageInput(media_type="image/webp", data=PNG),
            ImageInput(media_type="image/gif", data=JPEG),
            model="claude-opus-4-1",
        ),
    )
    gif_block = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/gif", "data": JPEG_B64},
    }
    assert two["messages"][-1] == {
        "role": "user",
        "content": [webp_block, gif_block, text_block],
    }


@pytest.mark.parametrize("wire_type", sorted(WIRES))
async def test_an_image_without_text_sends_no_empty_text_part(wire_type: str) -> None:
    request = ChatRequest(
        messages=[
            ChatMessage(
                role=Role.USER, content="", images=[ImageInput(media_type="image/png", data=PNG)]
            )
        ]
    )
    body = await sent_body(wire_type, request.model_copy(update={"model": VISION_MODEL[wire_type]}))
    message = body["messages"][-1]
    if wire_type == "ollama":
        assert message == {"role": "user", "content": "", "images": [PNG_B64]}
    else:
        assert isinstance(message["content"], list)
        assert [part["type"] for part in message["content"]] in (["image_url"], ["image"])


# --- the refusal, before anything is sent ----------------------------------------------------


@pytest.mark.parametrize("wire_type", sorted(WIRES))
async def test_images_for_a_model_not_known_to_accept_them_are_refused_before_sending(
    wire_type: str,
) -> None:
    server = Server()  # any request would fail the test ("unexpected request")
    request = rich_request(ImageInput(media_type="image/png", data=PNG))
    async with create_provider(
        make_spec(wire_type, model="text-only-7b"), transport=server.transport
    ) as provider:
        with pytest.raises(ImagesNotSupportedError) as info:
            await collect(provider, request)
    assert server.requests == []
    message = str(info.value)
    assert "'text-only-7b' is not known to accept images" in message
    assert "Choose a vision model such as" in message
    assert "set `vision: true` on the entry in .config.yml" in message
    assert info.value.model == "text-only-7b"
    assert isinstance(info.value, ProviderConfigError)


async def test_the_request_model_override_is_what_is_checked() -> None:
    server = Server()
    async with create_provider(
        make_spec("openai", model="gpt-4o"), transport=server.transport
    ) as provider:
        with pytest.raises(ImagesNotSupportedError, match="'o3-mini'"):
            await collect(
                provider,
                rich_request(ImageInput(media_type="image/png", data=PNG), model="o3-mini"),
            )
    assert server.requests == []


async def test_vision_true_on_the_entry_lets_an_unknown_model_take_images() -> None:
    body = await sent_body(
        "openai", rich_request(ImageInput(media_type="image/png", data=PNG)), vision=True
    )
    assert body["messages"][-1]["content"][1]["type"] == "image_url"


async def test_vision_false_on_the_entry_refuses_a_known_vision_model() -> None:
    server = Server()
    async with create_provider(
        make_spec("ollama", model="llava", vision=False), transport=server.transport
    ) as provider:
        with pytest.raises(ImagesNotSupportedError):
            await collect(provider, rich_request(ImageInput(media_type="image/png", data=PNG)))
    assert server.requests == []


async def test_template_mode_refuses_images_before_sending() -> None:
    server = Server()
    spec = make_spec("ollama", model="llava", template="{{ prompt }}", vision=True)
    async with create_provider(spec, transport=server.transport) as provider:
        with pytest.raises(ProviderConfigError, match="cannot carry images"):
            await collect(provider, rich_request(ImageInput(media_type="image/png", data=PNG)))
    assert server.requests == []


# --- the known list and the override ---------------------------------------------------------


@pytest.mark.parametrize(
    ("wire_type", "model"),
    [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini-2024-07-18"),
        ("openai", "gpt-4.1-nano"),
        ("openai", "gpt-5"),
        ("openai", "o3"),
        ("openai", "o4-mini"),
        ("openai", "openai/gpt-4o"),  # OpenRouter
        ("openai", "anthropic/claude-3.5-sonnet"),
        ("openai", "google/gemini-2.0-flash-001"),
        ("openai", "Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf"),  # llama.cpp
        ("openai", "meta-llama/Llama-3.2-11B-Vision-Instruct"),  # vLLM
        ("openai", "mistralai/pixtral-12b"),
        ("openai", "google/gemma-3-27b-it"),
        ("ollama", "llava:13b"),
        ("ollama", "bakllava"),
        ("ollama", "llama3.2-vision:11b"),
        ("ollama", "llama4:scout"),
        ("ollama", "qwen2.5vl:7b"),
        ("ollama", "gemma3:4b"),
        ("ollama", "minicpm-v"),
        ("ollama", "moondream"),
        ("ollama", "mistral-small3.1:24b"),
        ("ollama", "granite3.2-vision"),
        ("anthropic", "claude-3-5-haiku-20241022"),
        ("anthropic", "claude-3-opus-20240229"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-opus-4-1-20250805"),
    ],
)
def test_known_vision_models(wire_type: str, model: str) -> None:
    assert accepts_images(wire_type, model) is True


@pytest.mark.parametrize(
    ("wire_type", "model", "expected"),
    [
        ("openai", "gpt-3.5-turbo", None),
        ("openai", "local-model", None),
        ("openai", "o3-mini", False),
        ("openai", "o1-mini", False),
        ("ollama", "llama3.2", None),
        ("ollama", "mistral-small:24b", None),
        ("ollama", "qwen2.5:7b", None),
        ("ollama", "gemma3:1b", False),
        ("ollama", "gemma3n:e4b", False),
        ("ollama", "gpt-4o", None),  # an Ollama server does not serve OpenAI's models
        ("anthropic", "claude-2.1", None),
        ("anthropic", "llava", None),
        ("my-plugin", "llava", None),  # a plug-in type knows no models
    ],
)
def test_models_not_known_to_accept_images(
    wire_type: str, model: str, expected: bool | None
) -> None:
    assert accepts_images(wire_type, model) is expected


def test_the_declared_flag_wins_over_the_known_list() -> None:
    assert accepts_images("ollama", "llama3.2", declared=True) is True
    assert accepts_images("my-plugin", "anything", declared=True) is True
    assert accepts_images("openai", "gpt-4o", declared=False) is False


# --- the image part itself -------------------------------------------------------------------


@pytest.mark.parametrize("media_type", ["image/bmp", "image/svg+xml", "application/pdf", "png"])
def test_an_unsupported_media_type_is_rejected(media_type: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="media_type"):
        ImageInput(media_type=media_type, data=PNG)


def test_an_empty_image_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="data"):
        ImageInput(media_type="image/png", data=b"")


def test_base64_text_instead_of_bytes_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="data"):
        ImageInput(media_type="image/png", data=PNG_B64)  # type: ignore[arg-type]


@pytest.mark.parametrize("role", [Role.SYSTEM, Role.ASSISTANT])
def test_images_go_with_user_messages_only(role: Role) -> None:
    with pytest.raises(pydantic.ValidationError, match="attach them to a user message"):
        ChatMessage(role=role, content="x", images=[ImageInput(media_type="image/png", data=PNG)])


def test_image_bytes_stay_out_of_the_repr() -> None:
    assert "fake-png" not in repr(ImageInput(media_type="image/png", data=PNG))


# --- Ollama's own capabilities (optional) ----------------------------------------------------


async def test_ollama_capabilities_from_api_show() -> None:
    seen: list[Any] = []

    def show(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={"capabilities": ["completion", "vision"]})

    server = Server(show, httpx.Response(200, json={"model_info": {}}), httpx.Response(404))
    async with OllamaProvider(make_spec("ollama", model="llava"), transport=server.transport) as p:
        assert await p.capabilities() == ["completion", "vision"]
        assert await p.capabilities("llava:13b") is None  # older Ollama: no capabilities
        assert await p.capabilities() is None  # no answer
    assert seen == [("/api/show", {"model": "llava"})]
    assert server.json_bodies()[1] == {"model": "llava:13b"}
