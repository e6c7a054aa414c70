"""Which models accept images, decided before a request with images is sent.

``accepts_images(provider_type, model, declared)`` answers from, in order:

1. ``declared``: the entry's own ``vision: true|false`` (``ProviderSpec.vision``), which
   always wins;
2. ``KNOWN_TEXT_ONLY``: names known *not* to accept images (``o3-mini``, ``gemma3:1b``...)
   give ``False``;
3. the known vision model name patterns of the provider type (``KNOWN_VISION``) give
   ``True``;
4. anything else is not known: ``None``.

Only ``True`` lets images through: ``require_images_accepted`` raises
``ImagesNotSupportedError`` for ``False`` and ``None``, naming the model and the fix.

The patterns are regular expressions searched (case-insensitive) in the model name, so
``openai/gpt-4o`` (OpenRouter), ``llava:13b`` (Ollama) and
``Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf`` (llama.cpp) all match. An OpenAI-compatible server
can serve any model, so the ``openai`` type knows every family; ``ollama`` knows the
open-weight families; ``anthropic`` knows Claude. A plug-in type knows none: its entries
say ``vision: true`` when their model accepts images.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from providers.errors import ImagesNotSupportedError, ProviderConfigError
from providers.spec import ProviderSpec
from providers.types import ChatRequest

#: OpenAI's own vision models.
OPENAI_VISION: tuple[str, ...] = (
    r"gpt-4o",  # gpt-4o, gpt-4o-mini, chatgpt-4o-latest
    r"gpt-4\.1",  # gpt-4.1, -mini, -nano
    r"gpt-4\.5",
    r"gpt-4-turbo",
    r"gpt-4-vision",
    r"gpt-5",
    r"(^|/)o1(-pro)?(-\d{4}-\d{2}-\d{2})?$",  # o1 (not o1-mini, o1-preview)
    r"(^|/)o3(-pro)?(-\d{4}-\d{2}-\d{2})?$",  # o3 (not o3-mini)
    r"(^|/)o4-mini",
)

#: Anthropic's Claude 3 and later (every one accepts images).
CLAUDE_VISION: tuple[str, ...] = (
    r"claude-3",  # claude-3-opus/sonnet/haiku, claude-3-5-*, claude-3-7-*
    r"claude-(sonnet|opus|haiku)-[4-9]",  # claude-sonnet-4-..., claude-opus-4-1-...
    r"claude-[4-9]",
)

#: Google's hosted multimodal models (through OpenAI-compatible gateways).
GEMINI_VISION: tuple[str, ...] = (r"gemini-(1\.5|[2-9])", r"gemini.*vision")

#: Open-weight vision models as Ollama, llama.cpp, LM Studio and vLLM name them.
OPEN_WEIGHT_VISION: tuple[str, ...] = (
    r"llava",  # llava, bakllava, llava-llama3, llava-phi3
    r"llama-?3\.2.*vision",  # llama3.2-vision, Llama-3.2-11B-Vision-Instruct
    r"llama-?4",  # llama4 (Scout, Maverick)
    r"qwen[\d.]*-?vl",  # qwen-vl, qwen2-vl, qwen2.5vl, Qwen2.5-VL-7B, qwen3-vl
    r"qvq",
    r"gemma-?3",  # gemma3 4b and larger (1b and 3n excluded below)
    r"minicpm-?v",  # minicpm-v, MiniCPM-V-2_6
    r"moondream",
    r"pixtral",
    r"mistral-small-?3\.[1-9]",  # mistral-small3.1, Mistral-Small-3.1-24B
    r"mistral-medium-?3",
    r"granite[\d.]*-vision",  # granite3.2-vision
    r"internvl",
    r"phi-?3\.5-vision",
    r"phi-?4-multimodal",
    r"smolvlm",
    r"idefics",
    r"(^|[-_/.:])vl($|[-_/.:])",  # a "-VL-" part, as vision-language models are named
    r"vision",  # "...-vision-..." models
)

#: Names that match a family above but do not accept images; they win over the patterns.
KNOWN_TEXT_ONLY: tuple[str, ...] = (
    r"(^|/)o[13]-mini",  # o1-mini, o3-mini (o4-mini is vision)
    r"(^|/)o1-preview",
    r"gpt-4o(-mini)?-(audio|realtime|transcribe|tts)",
    r"gemma-?3n",
    r"gemma-?3\S*[-:_]?(1b|270m)\b",
)

#: The known vision model name patterns of each provider type.
KNOWN_VISION: Mapping[str, tuple[str, ...]] = {
    "openai": OPENAI_VISION + CLAUDE_VISION + GEMINI_VISION + OPEN_WEIGHT_VISION,
    "ollama": OPEN_WEIGHT_VISION,
    "anthropic": CLAUDE_VISION,
}

#: Examples named in the refusal, per provider type.
EXAMPLES: Mapping[str, str] = {
    "openai": "gpt-4o, gpt-4.1, qwen2.5-vl or gemma-3",
    "ollama": "llama3.2-vision, qwen2.5vl, gemma3 or llava",
    "anthropic": "claude-sonnet-4 or claude-3-5-haiku",
}

_COMPILED = {
    provider_type: re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    for provider_type, patterns in KNOWN_VISION.items()
}
_TEXT_ONLY = re.compile("|".join(f"(?:{p})" for p in KNOWN_TEXT_ONLY), re.IGNORECASE)


def accepts_images(provider_type: str, model: str, declared: bool | None = None) -> bool | None:
    """Whether ``model`` served over ``provider_type`` accepts images.

    ``declared`` (the entry's ``vision`` setting) wins when set. Otherwise: ``False``
    for a known text-only name, ``True`` for a known vision name, ``None`` when the
    model is not known either way.
    """
    if declared is not None:
        return declared
    name = model.strip()
    if _TEXT_ONLY.search(name):
        return False
    known = _COMPILED.get(provider_type)
    if known is not None and known.search(name):
        return True
    return None


def images_refusal(
    provider_type: str, model: str, *, provider: str = ""
) -> ImagesNotSupportedError:
    """The error for images sent to ``model``: what went wrong and the two fixes."""
    examples = EXAMPLES.get(provider_type, "a model its server documents as vision-capable")
    return ImagesNotSupportedError(
        f"model {model!r} is not known to accept images, so the images were not sent. "
        f"Choose a vision model such as {examples}, or set `vision: true` on the entry in "
        ".config.yml if this model accepts images.",
        provider=provider,
        model=model,
    )


def require_images_accepted(request: ChatRequest, spec: ProviderSpec) -> None:
    """Raise before sending when ``request`` carries images the entry cannot take.

    A request without images always passes. With images: template mode (one raw
    text prompt) raises ``ProviderConfigError``; a model that ``accepts_images`` does
    not say ``True`` for raises ``ImagesNotSupportedError``.
    """
    if not request.has_images:
        return
    if spec.template is not None and spec.template.strip():
        raise ProviderConfigError(
            "this entry uses `template` (one raw text prompt), which cannot carry images. "
            "Send the images with an entry without `template`.",
            provider=spec.name,
        )
    model = request.model or spec.model
    if accepts_images(spec.type, model, spec.vision) is not True:
        raise images_refusal(spec.type, model, provider=spec.name)
