"""Text out of each supported kind, and one clear refusal for each bad input."""

from __future__ import annotations

import io
import logging
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from app.attachments import (
    AttachmentError,
    Kind,
    Limits,
    RefusalReason,
    ZipLimits,
    extract,
    extract_file,
)
from app.attachments.samples import minimal_docx
from app.errors import ExitCode, UsageError
from tests.attachment_files import (
    docx_bytes,
    encrypted_pdf_bytes,
    flate_bomb_pdf,
    lying_zip,
    pdf_bytes,
    png_bytes,
    zip_with_zeros,
)

MIB = 1024 * 1024


def refusal(name: str, data: bytes, limits: Limits | None = None) -> AttachmentError:
    with pytest.raises(AttachmentError) as caught:
        extract(name, data, limits)
    return caught.value


# -- text and code ---------------------------------------------------------------------


def test_utf8_code_is_read_as_written_with_newlines_normalised() -> None:
    found = extract("src/main.py", "def f():\r\n    return 'café ☕'\r\n".encode())
    assert (found.kind, found.media_type, found.encoding) == (Kind.TEXT, "text/plain", "utf-8")
    assert found.text == "def f():\n    return 'café ☕'\n"
    assert [part.label for part in found.parts] == ["main.py"]


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        ("\ufeffUnicode with a mark: naïve café".encode("utf-16-le"), "utf-16"),
        ("Unicode with a mark: naïve café".encode("utf-16"), "utf-16"),
        ("Unicode with a mark: naïve café".encode("utf-8-sig"), "utf-8"),
        ("Unicode with a mark: naïve café".encode("utf-32"), "utf-32"),
    ],
    ids=["utf-16-le-bom", "utf-16-native-bom", "utf-8-bom", "utf-32-bom"],
)
def test_byte_order_marks_choose_the_encoding(encoded: bytes, encoding: str) -> None:
    found = extract("notes.txt", encoded)
    assert found.encoding == encoding
    assert found.text == "Unicode with a mark: naïve café"


# Long enough for charset-normalizer to be sure; only characters cp1252 and latin-1 share.
WESTERN = (
    "Le café était fermé, alors nous sommes allés à la crêperie près de l'église. "
    "Über den Flüssen lagen Nebelschwaden; die Straßen waren leer und still. "
    "El niño comió más piñones en el jardín de su abuela en Málaga. "
) * 4


@pytest.mark.parametrize("codec", ["cp1252", "latin-1"])
def test_western_single_byte_text_is_detected(codec: str) -> None:
    found = extract("letter.txt", WESTERN.encode(codec))
    assert found.text == WESTERN
    assert found.encoding != "utf-8"


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("Le café était fermé à l'église. " * 3, "cp1252"),
        ("A ação do coração não é fácil; você está à espera do avô. " * 4, "cp1252"),
        ("Perché è così difficile? Città, università e caffè. " * 4, "latin-1"),
        ("Très bien, à bientôt !", "cp1252"),
    ],
    ids=["french", "portuguese", "italian", "one-line"],
)
def test_short_western_text_is_not_read_as_central_european(text: str, codec: str) -> None:
    # charset-normalizer alone picks cp1250 or mac_latin2 for these ("cafť", "açăo").
    assert extract("short.txt", text.encode(codec)).text == text


def test_a_tie_goes_to_the_local_windows_code_page(monkeypatch: pytest.MonkeyPatch) -> None:
    import locale

    hungarian = "Árvíztűrő tükörfúrógép. Tegnap elmentünk a boltba. " * 5
    data = hungarian.encode("cp1250")  # reads exactly as well in cp1252 ("tûrõ")
    assert extract("hu.txt", data).encoding == "cp1252"
    monkeypatch.setattr(locale, "getencoding", lambda: "cp1250")  # a Central European Windows
    found = extract("hu.txt", data)
    assert (found.encoding, found.text) == ("cp1250", hungarian)


def test_cp1252_punctuation_is_read() -> None:
    text = "\u201cQuoted\u201d \u2013 and the price is \u20ac5. " + WESTERN
    assert extract("memo.txt", text.encode("cp1252")).text == text


def test_unknown_binary_is_refused_with_the_supported_types() -> None:
    data = bytes(range(256)) * 64
    error = refusal("blob.dat", data)
    assert error.reason is RefusalReason.UNSUPPORTED_TYPE
    assert str(error).startswith("blob.dat is not a text file")
    assert "PNG, JPEG, WebP or GIF" in str(error)


def test_text_with_nul_bytes_is_binary() -> None:
    assert refusal("x.txt", b"looks like text\x00\x00\x01 but is not").reason is (
        RefusalReason.UNSUPPORTED_TYPE
    )


def test_blank_text_has_nothing_to_attach() -> None:
    assert refusal("blank.txt", b" \n\t\n").reason is RefusalReason.NO_TEXT


def test_markdown_is_kept_as_markdown() -> None:
    found = extract("notes.md", b"# Plan\n\n- one\n- `two`\n")
    assert (found.kind, found.media_type) == (Kind.MARKDOWN, "text/markdown")
    assert found.text == "# Plan\n\n- one\n- `two`\n"


def test_html_gives_its_visible_text() -> None:
    page = b"""<!DOCTYPE html><html><head><title>The  page</title>
    <style>body { color: red }</style><script>var secret = "SCRIPT";</script></head>
    <body><h1>Heading</h1><p>First &amp; <b>bold</b>
    paragraph.</p><table><tr><th>Name</th><td>Value</td></tr></table>
    <pre>  keep
    this</pre><noscript>NOSCRIPT</noscript><p>Caf&eacute;</p></body></html>"""
    found = extract("saved.html", page)
    assert found.kind is Kind.HTML
    text = found.text
    assert text.startswith("The page\n\nHeading\n")
    assert "First & bold paragraph." in text
    assert "Name\tValue" in text
    assert "  keep\n    this" in text
    assert "Café" in text
    for hidden in ("SCRIPT", "color", "NOSCRIPT"):
        assert hidden not in text


def test_html_with_an_unclosed_head_still_gives_its_body() -> None:
    assert "Body text" in extract("a.html", b"<html><head><title>T</title><body>Body text").text


# -- PDF --------------------------------------------------------------------------------


def test_pdf_text_comes_page_by_page_with_page_labels() -> None:
    data = pdf_bytes([["First page (one)", "second line"], None, ["Third page."]])
    found = extract("/tmp/in/report.pdf", data)
    assert (found.kind, found.media_type, found.page_count) == (Kind.PDF, "application/pdf", 3)
    assert [(part.page, part.label) for part in found.parts] == [
        (1, "report.pdf, p. 1"),
        (3, "report.pdf, p. 3"),
    ]
    assert found.parts[0].text == "First page (one)\nsecond line"
    assert found.text == "[p. 1]\nFirst page (one)\nsecond line\n\n[p. 3]\nThird page."


def test_a_pdf_without_a_text_layer_is_reported_as_such() -> None:
    error = refusal("scan.pdf", pdf_bytes([None, None]))
    assert error.reason is RefusalReason.NO_TEXT
    assert "no text layer on any of its 2 page(s)" in str(error)
    assert "scanned PDF" in str(error)
    assert "OCR" in str(error)


def test_a_password_protected_pdf_is_refused_with_what_to_do() -> None:
    error = refusal("locked.pdf", encrypted_pdf_bytes([["Secret page"]], "hunter2-long"))
    assert error.reason is RefusalReason.ENCRYPTED
    assert "protected by a password" in str(error)
    assert "without the password" in str(error)


def test_a_pdf_encrypted_without_a_user_password_is_read() -> None:
    # Only an owner password (printing, copying restrictions): every viewer opens it.
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes([["Open to read"]]))))
    writer.encrypt(user_password="", owner_password="owner-only", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert extract("restricted.pdf", buffer.getvalue()).text == "[p. 1]\nOpen to read"


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n" + bytes(range(256)) * 4,
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R",
    ],
    ids=["garbage", "truncated"],
)
def test_a_corrupt_pdf_is_one_clear_error(data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    error = refusal("broken.pdf", data)
    assert error.reason is RefusalReason.DAMAGED
    assert str(error).startswith("broken.pdf is a damaged PDF")
    assert "save or print a new copy" in str(error)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_pdf_stream_that_inflates_past_the_cap_is_refused_within_bounded_memory() -> None:
    data = flate_bomb_pdf(100 * MIB)  # about 100 KB
    tracemalloc.start()
    try:
        error = refusal("bomb.pdf", data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.reason is RefusalReason.DAMAGED
    assert peak < 48 * MIB  # pypdf's own cap (75 MB) peaks at about 150 MiB


def test_pypdf_log_records_never_reach_the_app_log(caplog: pytest.LogCaptureFixture) -> None:
    # The app's handlers sit on the root logger (app/logs.py). caplog is no witness
    # here: it also attaches itself to every non-propagating logger, pypdf's included.
    data = pdf_bytes([["Visible"]])
    head, _, tail = data.rpartition(b"startxref\n")
    broken = head + b"startxref\n" + b"12" + tail[tail.index(b"\n") :]  # a wrong pointer
    root = _Records()
    logging.getLogger().addHandler(root)
    try:
        with caplog.at_level(logging.DEBUG):
            assert extract("x.pdf", broken).text == "[p. 1]\nVisible"  # pypdf recovers
            logging.getLogger("pypdf._reader").warning("quoting the file: %s", "SENTINEL")
    finally:
        logging.getLogger().removeHandler(root)
    assert not [record for record in root.records if record.name.startswith("pypdf")]
    assert "SENTINEL" not in "".join(record.getMessage() for record in root.records)
    withheld = [record for record in root.records if record.name == "app.attachments.pdf"]
    assert len(withheld) >= 2  # pypdf's recovery warning and ours, each content-free
    assert all("message withheld" in record.getMessage() for record in withheld)


def test_an_unexpected_parser_error_is_logged_with_its_traceback_not_its_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import pypdf

    quoted = "SENTINEL quoted from the file"

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError(quoted)

    monkeypatch.setattr(pypdf, "PdfReader", explode)
    with caplog.at_level(logging.WARNING):
        error = refusal("odd.pdf", pdf_bytes([["x"]]))
    assert error.reason is RefusalReason.DAMAGED
    assert "RuntimeError" in caplog.text
    assert "in explode" in caplog.text  # the traceback
    assert "SENTINEL" not in caplog.text


# -- DOCX -------------------------------------------------------------------------------


def test_docx_paragraphs_and_tables_in_document_order() -> None:
    data = docx_bytes(
        ["Contract", "The parties agree."], tables=[[["Item", "Price"], ["Chair", "40 EUR"]]]
    )
    found = extract("contract.docx", data)
    assert found.kind is Kind.DOCX
    assert found.text == "Contract\nThe parties agree.\nItem\tPrice\nChair\t40 EUR"
    assert [part.label for part in found.parts] == ["contract.docx"]


def test_a_merged_docx_cell_is_read_once() -> None:
    import docx

    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 2)).text = "Wide header"
    for column, value in enumerate(["a", "b", "c"]):
        table.cell(1, column).text = value
    buffer = io.BytesIO()
    document.save(buffer)
    assert extract("t.docx", buffer.getvalue()).text == "Wide header\na\tb\tc"


def test_an_empty_docx_has_no_text() -> None:
    error = refusal("empty.docx", docx_bytes([]))
    assert error.reason is RefusalReason.NO_TEXT


def _rezip(data: bytes, replace: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, replace.get(info.filename, source.read(info)))
    return out.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda: docx_bytes(["x"])[:-200],
        lambda: _rezip(docx_bytes(["x"]), {"word/document.xml": b"<w:document><unclosed"}),
        lambda: _rezip(docx_bytes(["x"]), {"[Content_Types].xml": b"<Types/>"}),
    ],
    ids=["truncated-zip", "malformed-xml", "not-a-word-package"],
)
def test_a_corrupt_docx_is_one_clear_error(make: object) -> None:
    assert callable(make)
    error = refusal("broken.docx", make())
    assert error.reason is RefusalReason.DAMAGED
    assert str(error).startswith("broken.docx is a damaged Word document")


@pytest.fixture(scope="module")
def huge_member_docx() -> bytes:
    """A .docx-looking zip whose document part inflates to 300 MiB (default limit 128)."""
    return zip_with_zeros(300 * MIB)


def test_a_zip_bomb_docx_is_refused_fast_without_inflating_it(huge_member_docx: bytes) -> None:
    assert len(huge_member_docx) < 1 * MIB
    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = refusal("bomb.docx", huge_member_docx)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 4 * MIB
    assert error.reason is RefusalReason.ZIP_BOMB
    assert "would unpack to 300 MB, over the 128 MB limit" in str(error)
    assert "zip bomb" in str(error)


def test_a_docx_member_that_lies_about_its_size_is_never_inflated_whole() -> None:
    # The directory declares 1,000 bytes (the CRC matches them); the stream holds 200 MiB.
    # python-docx's one-call read() would inflate all of it before cutting it short.
    data = lying_zip("[Content_Types].xml", 200 * MIB, 1000)
    tracemalloc.start()
    try:
        error = refusal("liar.docx", data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB
    assert error.reason is RefusalReason.DAMAGED


def test_a_zip_bomb_under_the_size_limit_is_caught_by_its_ratio() -> None:
    error = refusal("ratio.docx", zip_with_zeros(20 * MIB))
    assert error.reason is RefusalReason.ZIP_BOMB
    assert "times when unpacked" in str(error)


def test_a_zip_with_too_many_members_is_refused() -> None:
    base = docx_bytes(["x"])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as source, zipfile.ZipFile(out, "a") as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
        for n in range(60):
            target.writestr(f"word/media/{n}.bin", b"")
    error = refusal("many.docx", out.getvalue(), Limits(zip=ZipLimits(max_members=50)))
    assert error.reason is RefusalReason.ZIP_BOMB
    assert "over the limit of 50" in str(error)


# -- size, emptiness, images, errors ----------------------------------------------------


def test_a_zero_byte_file_is_refused() -> None:
    error = refusal("empty.pdf", b"")
    assert error.reason is RefusalReason.EMPTY
    assert str(error).startswith("empty.pdf is empty (0 bytes)")


def test_a_file_over_the_limit_is_refused_before_it_is_parsed() -> None:
    error = refusal("big.pdf", pdf_bytes([["x"] * 50]), Limits(max_bytes=1000))
    assert error.reason is RefusalReason.TOO_LARGE
    assert str(error).startswith("big.pdf is 1 KB, over the 1,000 bytes limit")
    assert "raise the maximum attachment size" in str(error)


def test_extract_file_refuses_an_oversized_file_without_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as file:
        file.truncate(60 * MIB)  # sparse: no disk used
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read"))
    with pytest.raises(AttachmentError) as caught:
        extract_file(path)
    assert caught.value.reason is RefusalReason.TOO_LARGE
    assert str(caught.value).startswith("huge.txt is 60 MB, over the 50 MB limit")


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_extract_file_refuses_a_path_it_cannot_read(tmp_path: Path, make: str) -> None:
    path = tmp_path / "report.pdf"
    if make == "directory":
        path.mkdir()
    with pytest.raises(AttachmentError) as caught:
        extract_file(path)
    assert caught.value.reason is RefusalReason.UNREADABLE
    assert str(caught.value).startswith(f"{path} cannot be read (")
    assert "Check the path" in str(caught.value)


def test_extract_file_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_bytes(b"# Notes\n")
    assert extract_file(path).parts[0].label == "notes.md"
    assert path.stat().st_size == extract_file(path).size


def test_an_image_has_a_media_type_and_size_but_no_text() -> None:
    found = extract("shot.png", png_bytes(4, 3))
    assert (found.kind, found.media_type, found.parts, found.text) == (
        Kind.IMAGE,
        "image/png",
        (),
        "",
    )
    assert found.image is not None and (found.image.width, found.image.height) == (4, 3)


def test_refusals_are_usage_errors_for_the_cli() -> None:
    error = refusal("empty.txt", b"")
    assert isinstance(error, UsageError)
    assert error.exit_code is ExitCode.USAGE


def test_the_minimal_word_package_reads_without_python_docx_templates() -> None:
    # The self-test writes it so the bundle can leave python-docx's templates out.
    extracted = extract("tiny.docx", minimal_docx(["Fish & <chips>", "second line"]))
    assert extracted.kind is Kind.DOCX
    assert extracted.text == "Fish & <chips>\nsecond line"


# --- large text files are decoded while they are read ---------------------------------------

_LINES = "naïve café, line {n}\r\n"


@pytest.mark.parametrize(
    ("codec", "bom"),
    [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe")],
)
def test_a_large_text_file_reads_as_the_whole_file_would(
    tmp_path: Path, codec: str, bom: bytes
) -> None:
    # Over a megabyte, with CRLF line ends that straddle the read blocks somewhere.
    text = "".join(_LINES.format(n=n) for n in range(60_000))
    data = bom + text.encode(codec)
    path = tmp_path / "notes.txt"
    path.write_bytes(data)
    whole = extract("notes.txt", data)
    streamed = extract_file(path)
    assert len(streamed.parts) > 1  # decoded in pieces, never bytes and text at once
    assert "".join(part.text for part in streamed.parts) == whole.parts[0].text
    assert "\r" not in "".join(part.text for part in streamed.parts)
    assert (streamed.kind, streamed.media_type, streamed.size) == (
        Kind.TEXT,
        "text/plain",
        len(data),
    )
    assert streamed.encoding == whole.encoding
    assert all(part.label == "notes.txt" for part in streamed.parts)


def test_a_lone_cr_at_a_block_end_is_one_line_break(tmp_path: Path) -> None:
    first = "a" * (MIB - 1) + "\r"
    path = tmp_path / "cr.txt"
    path.write_bytes((first + "\nb\rc").encode())
    text = "".join(part.text for part in extract_file(path).parts)
    assert text == "a" * (MIB - 1) + "\nb\nc"


def test_a_large_file_in_another_encoding_is_read_from_its_whole_bytes(tmp_path: Path) -> None:
    data = ("Grüße aus Köln. " * 80_000).encode("latin-1")  # not UTF-8
    path = tmp_path / "western.txt"
    path.write_bytes(data)
    whole = extract("western.txt", data)
    extracted = extract_file(path)
    assert extracted.encoding == whole.encoding != "utf-8"
    assert [part.text for part in extracted.parts] == [whole.parts[0].text]


def test_a_large_binary_file_named_txt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(b"\x01\x02\x03abc" * (MIB // 3))
    with pytest.raises(AttachmentError) as caught:
        extract_file(path)
    assert caught.value.reason is RefusalReason.UNSUPPORTED_TYPE


def test_a_large_blank_file_has_nothing_to_attach(tmp_path: Path) -> None:
    path = tmp_path / "blank.md"
    path.write_bytes(b" \n" * MIB)
    with pytest.raises(AttachmentError) as caught:
        extract_file(path)
    assert caught.value.reason is RefusalReason.NO_TEXT


def test_text_length_is_the_length_of_the_joined_text(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_bytes(b"word word\n" * 300_000)
    for extracted in (extract_file(path), extract("r.pdf", pdf_bytes(["one", "two two"]))):
        assert extracted.text_length == len(extracted.text)
