"""Attachments: what kind a file is, its text, and how that text enters a chat.

Qt-free and storage-free: bytes in, ``Extracted`` out (``extract``); then either
inline (``placement``, ``render_inline``) or chunks for retrieval (``chunk_parts``).
Every refusal is an ``AttachmentError`` whose message says what to do. The PDF and
Word parsers are imported on first use, not with this package.
"""

from __future__ import annotations

from app.attachments.chunking import (
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_INLINE_THRESHOLD,
    Chunk,
    Placement,
    chunk_parts,
    placement,
    render_inline,
)
from app.attachments.detection import SUPPORTED_TYPES, Detection, ImageSize, Kind, detect
from app.attachments.errors import AttachmentError, RefusalReason
from app.attachments.extraction import (
    DEFAULT_MAX_BYTES,
    Extracted,
    Limits,
    Part,
    extract,
    extract_file,
    page_label,
)
from app.attachments.word import ZipLimits

__all__ = [
    "DEFAULT_CHUNK_OVERLAP",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_INLINE_THRESHOLD",
    "DEFAULT_MAX_BYTES",
    "SUPPORTED_TYPES",
    "AttachmentError",
    "Chunk",
    "Detection",
    "Extracted",
    "ImageSize",
    "Kind",
    "Limits",
    "Part",
    "Placement",
    "RefusalReason",
    "ZipLimits",
    "chunk_parts",
    "detect",
    "extract",
    "extract_file",
    "page_label",
    "placement",
    "render_inline",
]
