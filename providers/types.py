"""Requests, events and model descriptions exchanged with providers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


#: The image types every supported wire format accepts.
ImageMediaType = Literal["image/png", "image/jpeg", "image/webp", "image/gif"]


class ImageInput(BaseModel):
    """One image sent with a user message: its media type and its raw (not base64) bytes.

    The bytes are base64-encoded only when the request is put on the wire, in the
    shape the provider type's API documents.
    """

    model_config = ConfigDict(frozen=True)

    media_type: ImageMediaType
    # strict: a str (say, base64 text) is refused rather than sent encoded twice
    data: bytes = Field(min_length=1, repr=False, strict=True)


class ChatMessage(BaseModel):
    """One message of the context. ``images`` go with user messages only.

    A message without images is sent exactly as before images existed (plain text
    ``content`` on every wire).
    """

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str
    images: list[ImageInput] = Field(default_factory=list)

    @model_validator(mode="after")
    def _images_on_user_messages(self) -> ChatMessage:
        if self.images and self.role is not Role.USER:
            raise ValueError(
                f"a {self.role.value} message cannot carry images; attach them to a user message"
            )
        return self


class ChatRequest(BaseModel):
    """One chat turn to send. ``messages`` holds the whole context, system first.

    ``memory`` is the chat's persistent note; wire-format providers fold it into
    the system prompt, template mode exposes it to the template as ``memory``.
    """

    model_config = ConfigDict(frozen=True)

    messages: list[ChatMessage]
    memory: str = ""
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    model: str | None = None  # overrides the spec's model for this request

    @property
    def has_images(self) -> bool:
        """True when any message carries an image."""
        return any(message.images for message in self.messages)


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str
    kind: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class UsageEvent:
    usage: Usage
    kind: Literal["usage"] = "usage"


@dataclass(frozen=True, slots=True)
class FinishEvent:
    """Last event of a successful stream. ``reason`` is normalised to
    ``stop`` | ``length`` | ``content_filter`` | ``tool_calls`` | ``other``;
    ``raw_reason`` keeps what the server said."""

    reason: str
    raw_reason: str | None = None
    kind: Literal["finish"] = "finish"


ChatEvent = TextDelta | ReasoningDelta | UsageEvent | FinishEvent


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    context_size: int | None = None
    owned_by: str | None = None
    details: dict[str, str] = field(default_factory=dict)
