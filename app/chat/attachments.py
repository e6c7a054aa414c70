"""Files attached to a chat message: checked, read and turned into context (no Qt).

``NewAttachment`` is a file about to be sent (a path on disk, streamed into the store, or
bytes such as a pasted image, never written to a temporary file). ``prepare`` reads and
checks it (size, kind, text) with ``app.attachments``; it is blocking work the service
runs in the runner's blocking pool. ``vision_problem`` says why an image cannot go to a
chat's model. ``TextCache`` keeps the text re-read from stored attachments for the
session, in memory only and bounded.

Everything is checked before anything is saved: a refusal changes nothing.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.attachments import (
    DEFAULT_INLINE_THRESHOLD,
    DEFAULT_MAX_BYTES,
    AttachmentError,
    Chunk,
    Extracted,
    Limits,
    Part,
    Placement,
    chunk_parts,
    extract,
    extract_file,
    placement,
    render_inline,
)
from app.config import Config, LLMEntry

if TYPE_CHECKING:
    from providers import ProviderError

_MIB = 1024 * 1024
#: Top-k excerpts sent with a question when the config does not say.
DEFAULT_RETRIEVAL_CHUNKS = 6
#: Characters of extracted text the session keeps in memory (re-read when evicted).
TEXT_CACHE_CHARS = 16_000_000


@dataclass(frozen=True, slots=True)
class NewAttachment:
    """A file to attach: ``path`` (read from disk, streamed) or ``data`` (in memory)."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError("a NewAttachment has either a path or data")

    @classmethod
    def from_path(cls, path: Path | str) -> NewAttachment:
        path = Path(path)
        return cls(path.name, path=path)

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> NewAttachment:
        return cls(name, data=bytes(data))

    def size(self) -> int | None:
        """Its size in bytes; None when the file cannot be read (``prepare`` says why)."""
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        try:
            return self.path.stat().st_size
        except OSError:
            return None


@dataclass(frozen=True, slots=True)
class AttachmentCheck:
    """What the composer shows on a chip: ``problem`` is the refusal (None: it can go)."""

    name: str
    size: int
    kind: str
    problem: str | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A new attachment read and checked, ready to be stored."""

    new: NewAttachment
    extracted: Extracted
    placement: Placement


@dataclass(frozen=True, slots=True)
class AttachmentSettings:
    """The ``attachments:`` config section's values (defaults when it is absent)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    inline_max_chars: int = DEFAULT_INLINE_THRESHOLD
    retrieval_chunks: int = DEFAULT_RETRIEVAL_CHUNKS

    @classmethod
    def of(cls, config: Config) -> AttachmentSettings:
        section: Any = getattr(config, "attachments", None)
        if section is None:
            return cls()
        max_mb = getattr(section, "max_size_mb", None)
        inline = getattr(section, "inline_max_chars", None)
        chunks = getattr(section, "retrieval_chunks", None)
        return cls(
            max_bytes=int(max_mb * _MIB) if max_mb else DEFAULT_MAX_BYTES,
            # 0 is a setting ("always search"), not a missing one.
            inline_max_chars=int(inline) if inline is not None else DEFAULT_INLINE_THRESHOLD,
            retrieval_chunks=int(chunks) if chunks else DEFAULT_RETRIEVAL_CHUNKS,
        )


def prepare(new: NewAttachment, settings: AttachmentSettings) -> Prepared:
    """Read and check one file (blocking); ``AttachmentError`` says why it cannot go."""
    limits = Limits(max_bytes=settings.max_bytes)
    if new.path is not None:
        extracted = extract_file(new.path, limits)
        if extracted.name != new.name:
            extracted = _renamed(extracted, new.name)
    else:
        assert new.data is not None
        extracted = extract(new.name, new.data, limits)
    return Prepared(new, extracted, placement(extracted, settings.inline_max_chars))


def prepare_all(files: Sequence[NewAttachment], settings: AttachmentSettings) -> list[Prepared]:
    """``prepare`` each file; the first refusal is raised."""
    return [prepare(new, settings) for new in files]


def check(
    new: NewAttachment, settings: AttachmentSettings
) -> tuple[AttachmentCheck, Placement | None]:
    """What the composer shows for one file (blocking), and where it would go."""
    size = new.size() or 0
    try:
        prepared = prepare(new, settings)
    except AttachmentError as error:
        return AttachmentCheck(new.name, size, "unknown", str(error)), None
    kind = prepared.extracted.kind
    return AttachmentCheck(prepared.extracted.name, size, kind.value, None), prepared.placement


def vision_refusal(entry: LLMEntry, model: str | None) -> ProviderError | None:
    """The error for images sent to ``entry``'s model (None: it accepts them)."""
    from providers import ProviderConfigError
    from providers.vision import accepts_images, images_refusal

    model = model or entry.model_name
    if entry.template is not None and entry.template.strip():
        return ProviderConfigError(
            f"{entry.provider_name} uses `template` (one raw text prompt), which cannot "
            "carry images. Choose a model entry without `template` for images.",
            provider=entry.provider_name,
        )
    if accepts_images(entry.type, model, entry.vision) is True:
        return None
    return images_refusal(entry.type, model, provider=entry.provider_name)


def vision_problem(entry: LLMEntry, model: str | None) -> str | None:
    """Why images cannot be sent to ``entry``'s model (None: they can)."""
    refusal = vision_refusal(entry, model)
    return None if refusal is None else str(refusal)


def inline_block(extracted: Extracted) -> str:
    """The fenced block an inline attachment adds to its message's content."""
    return render_inline(extracted)


def with_inline(content: str, blocks: Sequence[str]) -> str:
    """A message's content followed by its inline attachments' blocks."""
    return "\n\n".join([content, *blocks]) if content.strip() else "\n\n".join(blocks)


def excerpts_block(excerpts: Sequence[tuple[str, str]]) -> str:
    """One fenced "Excerpts" block: each excerpt headed by its label."""
    body = "\n\n".join(f"[{label}]\n{text}" for label, text in excerpts)
    longest = max((len(run) for run in _backtick_runs(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}Excerpts\n{body}\n{fence}"


def fitting(excerpts: Sequence[tuple[str, str]], max_chars: int) -> list[tuple[str, str]]:
    """The best excerpts, in order, while their text fits ``max_chars`` (the first one,
    cut short if it alone is longer; all of them when ``max_chars`` is 0)."""
    if max_chars <= 0:
        return list(excerpts)
    chosen: list[tuple[str, str]] = []
    used = 0
    for label, text in excerpts:
        cost = len(label) + len(text) + 4
        if used + cost > max_chars:
            if not chosen:
                chosen.append((label, text[: max(0, max_chars - len(label) - 4)]))
            break
        chosen.append((label, text))
        used += cost
    return chosen


def _backtick_runs(text: str) -> list[str]:
    return re.findall(r"`+", text)


def _renamed(extracted: Extracted, name: str) -> Extracted:
    import dataclasses

    return dataclasses.replace(extracted, name=name)


class TextCache:
    """Extracted attachments by attachment id, least recently used dropped first once
    their text passes ``max_chars`` (thread-safe: filled from the blocking pool)."""

    def __init__(self, max_chars: int = TEXT_CACHE_CHARS) -> None:
        self._max = max_chars
        self._items: OrderedDict[str, Extracted] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, attachment_id: str) -> Extracted | None:
        with self._lock:
            found = self._items.get(attachment_id)
            if found is not None:
                self._items.move_to_end(attachment_id)
            return found

    def put(self, attachment_id: str, extracted: Extracted) -> None:
        size = sum(len(part.text) for part in extracted.parts)
        if size > self._max:
            return
        with self._lock:
            old = self._items.pop(attachment_id, None)
            if old is not None:
                self._chars -= sum(len(part.text) for part in old.parts)
            self._items[attachment_id] = extracted
            self._chars += size
            while self._chars > self._max and self._items:
                _, dropped = self._items.popitem(last=False)
                self._chars -= sum(len(part.text) for part in dropped.parts)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._chars = 0


_WORD = re.compile(r"\w+")
# Long text is chunked a window of about this many characters at a time, so ranking a
# 50 MB document never holds all of its chunks at once.
_WINDOW_CHARS = 1_000_000


def _pieces(documents: Sequence[Extracted]) -> Iterator[Part]:
    """Every part of ``documents``, a long one cut at line breaks into windows."""
    for document in documents:
        for part in document.parts:
            text, start = part.text, 0
            while start < len(text):
                end = min(len(text), start + _WINDOW_CHARS)
                if end < len(text):
                    cut = text.rfind("\n", start + _WINDOW_CHARS // 2, end)
                    end = cut + 1 if cut >= 0 else end
                yield Part(text[start:end], part.label, part.page)
                start = end


def _chunks(documents: Sequence[Extracted]) -> Iterator[Chunk]:
    for piece in _pieces(documents):
        yield from chunk_parts([piece])


def lazy_chunks(extracted: Extracted) -> Sequence[tuple[str, str]]:
    """The (text, label) chunks of a long attachment, made while they are read.

    The index reads them once, in order (``app.store.chunks.add_chunks``); a 50 MB text
    is cut a window at a time instead of holding all of its chunks at once.
    """
    return _LazyChunks(extracted)


class _LazyChunks(Sequence[tuple[str, str]]):
    """A one-pass view of an attachment's chunks: iterate it; nothing else is cheap."""

    def __init__(self, extracted: Extracted) -> None:
        self._extracted = extracted

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((chunk.text, chunk.label) for chunk in _chunks([self._extracted]))

    def __len__(self) -> int:
        return sum(1 for _ in _chunks([self._extracted]))

    def __getitem__(self, index: Any) -> Any:
        return list(self)[index]
