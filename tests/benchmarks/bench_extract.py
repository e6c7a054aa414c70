"""Attachment text extraction: a generated 300-page text PDF read and chunked.

* extract - median wall time of ``app.attachments.extract`` on the PDF (pypdf, page by
  page); the PDF is written by ``tests.attachment_files.pdf_bytes``: 300 letter-size
  pages of 45 Helvetica lines each, about 3,600 characters a page;
* chunk - median time of ``chunk_parts`` over its text at the default size and overlap;
* extract + chunk - their sum against the issue 14 budget for indexing a 300-page text
  PDF without embeddings (≤ 10 s); storing the chunks in the full-text index comes on
  top once the store has one.
"""

from __future__ import annotations

import statistics
import time

from app.attachments import chunk_parts, extract
from tests.attachment_files import pdf_bytes
from tests.benchmarks._table import Row

PAGES = 300
LINES_PER_PAGE = 45
RUNS = 3
INDEX_BUDGET_SECONDS = 10.0


def _pdf() -> bytes:
    return pdf_bytes(
        [
            [
                f"Page {page}, line {line}: the committee reviewed clause {line} of the "
                "agreement and found it acceptable."
                for line in range(LINES_PER_PAGE)
            ]
            for page in range(1, PAGES + 1)
        ]
    )


def run() -> list[Row]:
    """Measure and return the extraction figures."""
    data = _pdf()
    extract_times, chunk_times = [], []
    for _ in range(RUNS):
        start = time.perf_counter()
        found = extract("benchmark.pdf", data)
        extract_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        chunks = chunk_parts(found.parts)
        chunk_times.append(time.perf_counter() - start)
    extract_seconds = statistics.median(extract_times)
    chunk_seconds = statistics.median(chunk_times)
    characters = sum(len(part.text) for part in found.parts)
    note = f"median of {RUNS}; {len(data) / 1e6:.1f} MB, {characters:,} characters"
    return [
        Row(f"attachments: extract a {PAGES}-page text PDF", extract_seconds, "s", note=note),
        Row(
            "attachments: chunk its text",
            chunk_seconds,
            "s",
            note=f"median of {RUNS}; {len(chunks):,} chunks",
        ),
        Row(
            f"attachments: extract + chunk, {PAGES}-page PDF",
            extract_seconds + chunk_seconds,
            "s",
            budget=INDEX_BUDGET_SECONDS,
            note="issue 14 indexing budget; the full-text index is not in it yet",
        ),
    ]
