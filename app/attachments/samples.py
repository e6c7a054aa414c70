"""Small documents written by code: a PDF with a text layer, a Word document.

``hushchat --self-test`` attaches one of each to prove the bundle reads them (pypdf,
python-docx over lxml), and the tests build their fixtures with them. pypdf cannot author
text, so ``pdf_bytes`` writes the objects, the cross-reference table and the trailer
itself: one Helvetica text object per page, one ``Tj`` per line.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

__all__ = ["docx_bytes", "minimal_docx", "pdf_bytes", "pdf_from_streams"]


def _pdf_string(line: str) -> bytes:
    escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def _content(lines: Sequence[str] | None) -> bytes:
    if lines is None:  # a "scanned" page: marks on it, no text object
        return b"0.5 g 72 72 300 500 re f 0 G 72 700 m 500 700 l S"
    body = [b"BT /F1 11 Tf 14 TL 72 760 Td"]
    body += [_pdf_string(line) + b" Tj T*" for line in lines]
    body.append(b"ET")
    return b"\n".join(body)


def pdf_bytes(pages: Sequence[Sequence[str] | None]) -> bytes:
    """A valid PDF with one page per item: its lines of text, or ``None`` for a page
    without a text layer."""
    return pdf_from_streams([(_content(lines), b"") for lines in pages])


def pdf_from_streams(contents: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The PDF file of pages with these content streams (and their extra stream keys)."""
    count = len(contents)
    page_ids = [4 + 2 * n for n in range(count)]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % pid for pid in page_ids)
        + b"] /Count %d >>" % count,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for n, (content, keys) in enumerate(contents):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_ids[n] + 1)
        )
        objects.append(
            b"<< /Length %d%s >>\nstream\n" % (len(content), keys) + content + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def docx_bytes(paragraphs: Sequence[str], tables: Sequence[Sequence[Sequence[str]]] = ()) -> bytes:
    """A Word document with the paragraphs, then each table (rows of cell texts)."""
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    for rows in tables:
        table = document.add_table(rows=len(rows), cols=len(rows[0]))
        for row, values in zip(table.rows, rows, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


_DOCX_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_DOCX_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Target="word/document.xml" Type="http://schemas.openxmlformats'
    '.org/officeDocument/2006/relationships/officeDocument"/></Relationships>'
)


def minimal_docx(paragraphs: Sequence[str]) -> bytes:
    """The smallest Word package python-docx reads: the paragraphs, no styles.

    Written with zipfile, so it needs none of python-docx's templates (which the desktop
    bundle leaves out: the app reads Word files, it never creates one).
    """
    from xml.sax.saxutils import escape

    body = "".join(
        f'<w:p><w:r><w:t xml:space="preserve">{escape(text)}</w:t></w:r></w:p>'
        for text in paragraphs
    )
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        f"<w:body>{body}</w:body></w:document>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", _DOCX_TYPES)
        package.writestr("_rels/.rels", _DOCX_RELS)
        package.writestr("word/document.xml", document)
    return buffer.getvalue()
