"""Loaders: every supported format parses into titled, structured blocks, and every bad file fails
with IngestError carrying a stable code and a message that names the file. Inputs are made here."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile

import pytest

from retrieval.errors import IngestError
from retrieval.loaders import SUPPORTED_SUFFIXES, Block, parse
from retrieval.loaders import docx as docx_loader

RETURNS_TEXT = (
    "You can return any item within 30 days of delivery for a full refund, as long as it is unused "
    "and in its original packaging. Refunds reach your account within five working days."
)


def make_pdf(pages: list[str], *, title: str | None = None, user_password: str | None = None) -> bytes:
    fpdf = pytest.importorskip("fpdf", reason="fpdf2 (a dev dependency) makes the test PDFs")
    pdf = fpdf.FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    data = bytes(pdf.output())
    if user_password is None:
        return data
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(data))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("Returns handbook", style="Title")
    document.add_paragraph("Read this before sending anything back.")
    document.add_heading("Returning an item", level=1)
    document.add_paragraph(RETURNS_TEXT)
    document.add_heading("Exceptions", level=2)
    document.add_paragraph("Gift cards cannot be returned.", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    for row, cells in zip(table.rows, [("Item", "Days"), ("Shoes", "60")], strict=True):
        for cell, value in zip(row.cells, cells, strict=True):
            cell.text = value
    document.add_heading("Refund timing", level=1)
    document.add_paragraph("Refunds take five working days.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def parse_error(data: bytes, filename: str, **kwargs) -> IngestError:
    with pytest.raises(IngestError) as caught:
        parse(data, filename=filename, **kwargs)
    assert filename.rsplit("/", 1)[-1] in caught.value.message  # people must know WHICH file
    return caught.value


# --- PDF ---------------------------------------------------------------------------------------


def test_pdf_gives_one_block_per_paragraph_with_its_page_and_the_metadata_title():
    data = make_pdf([RETURNS_TEXT, "Shipping is free above 50 euros."], title="Returns policy")
    doc = parse(data, filename="returns.pdf")
    assert (doc.kind, doc.title, doc.language) == ("pdf", "Returns policy", "en")
    assert {b.page for b in doc.blocks} == {1, 2}
    assert "30 days of delivery" in " ".join(b.text for b in doc.blocks if b.page == 1)
    assert [b.text for b in doc.blocks if b.page == 2] == ["Shipping is free above 50 euros."]


def test_pdf_without_metadata_title_is_titled_by_its_first_line():
    doc = parse(make_pdf(["Warranty terms\n" + RETURNS_TEXT]), filename="w.pdf")
    assert doc.title == "Warranty terms"


def test_pdf_locked_with_a_password_is_refused_as_encrypted():
    error = parse_error(make_pdf([RETURNS_TEXT], user_password="s3cret"), "locked.pdf")
    assert error.code == "encrypted"


def test_pdf_encrypted_only_against_editing_is_read():
    doc = parse(make_pdf([RETURNS_TEXT], user_password=""), filename="owner-only.pdf")
    assert "30 days" in doc.blocks[0].text


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9])
def test_truncated_pdf_fails_cleanly(cut):
    data = make_pdf([RETURNS_TEXT] * 3)
    error = parse_error(data[: int(len(data) * cut)], "truncated.pdf")
    assert error.code in ("malformed", "empty")


def test_garbage_named_pdf_is_refused_by_its_header():
    error = parse_error(bytes(range(256)) * 40, "fake.pdf")
    assert error.code == "malformed" and "%PDF" in error.message


def test_pdf_without_text_says_it_needs_text_recognition():
    error = parse_error(make_pdf([""]), "scan.pdf")
    assert error.code == "empty" and "scanned" in error.message


# --- DOCX --------------------------------------------------------------------------------------


def test_docx_headings_give_the_section_path_and_tables_become_rows():
    doc = parse(make_docx(), filename="handbook.docx")
    assert (doc.kind, doc.title, doc.language) == ("docx", "Returns handbook", "en")
    by_text = {b.text: b for b in doc.blocks}
    assert by_text["Read this before sending anything back."].headings == ()
    assert by_text[RETURNS_TEXT].headings == ("Returning an item",)
    assert by_text[RETURNS_TEXT].anchor == "returning-an-item"
    assert by_text["- Gift cards cannot be returned."].headings == ("Returning an item", "Exceptions")
    assert by_text["Item | Days\nShoes | 60"].headings == ("Returning an item", "Exceptions")
    assert by_text["Refunds take five working days."].headings == ("Refund timing",)


def test_docx_that_is_not_a_zip_is_malformed():
    assert parse_error(b"PK\x03\x04 but not really a zip" * 10, "broken.docx").code == "malformed"


def test_zip_without_a_word_document_is_malformed():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi there")
    assert parse_error(out.getvalue(), "notword.docx").code == "malformed"


def test_docx_zip_bomb_is_refused_before_anything_is_inflated(monkeypatch):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (8 * 1024 * 1024))  # ~8 KB compressed
    # python-docx must never be reached: it would read the part whole.
    monkeypatch.setattr(docx_loader.docx, "Document", lambda *a: pytest.fail("inflated a zip bomb"))
    error = parse_error(out.getvalue(), "bomb.docx")
    assert error.code == "zip_bomb" and "word/document.xml" in error.message


def test_docx_whose_parts_add_up_past_the_cap_is_a_zip_bomb(monkeypatch):
    monkeypatch.setattr(docx_loader, "MAX_UNCOMPRESSED_BYTES", 10_000)
    assert parse_error(make_docx(), "big.docx").code == "zip_bomb"


# --- HTML --------------------------------------------------------------------------------------

PAGE = b"""<!doctype html><html><head><title>Returns policy | Acme</title>
<style>body { color: red }</style><script>var tracking = "secret-tracker";</script></head><body>
<nav><a href="/">Home</a> <a href="/shop">Shop all products</a> <a href="/about">About us</a></nav>
<div class="cookie-banner" id="cookie-consent">We use cookies to improve your experience. Accept?</div>
<main><article><h1>Returns policy</h1>
<p onclick="steal()">You can return any item within 30 days of delivery for a full refund, as long as it
is unused and in its original packaging.</p>
<h2>How to return</h2><p>Print the label from your account page and drop the parcel at a post office.
<iframe src="https://evil.example/"></iframe><img src=x onerror="alert('pwned')"> Refunds take five days.</p>
<ul><li>Keep the receipt</li><li>Use the original box</li></ul>
<h3>Exceptions</h3><p>Gift cards and perishable food cannot be returned.<script>alert('pwned')</script></p>
</article></main>
<footer>Copyright 2024 Acme Inc. All rights reserved. <a href="/privacy">Privacy policy</a></footer>
</body></html>"""


def test_html_keeps_main_text_and_heading_structure_only():
    doc = parse(PAGE, filename="returns.html")
    assert (doc.kind, doc.title, doc.language) == ("html", "Returns policy", "en")
    everything = "\n".join(b.text for b in doc.blocks)
    for boilerplate in ("Shop all products", "cookies", "Copyright", "secret-tracker", "color: red"):
        assert boilerplate not in everything
    assert "30 days of delivery" in everything
    assert {b.text: b.headings for b in doc.blocks}["- Keep the receipt\n- Use the original box"] == (
        "How to return",
    )
    assert doc.blocks[-1].headings == ("How to return", "Exceptions")
    assert doc.blocks[-1].anchor == "exceptions"


def test_html_without_a_content_container_keeps_headings_and_drops_boilerplate():
    loose = (
        b"<html><head><title>Help</title></head><body><nav><a href=/>Home</a> <a href=/shop>Shop</a></nav>"
        b'<div class="Cookie-Banner">We use cookies to make this site work. Accept all cookies?</div>'
        b"<h1>Help</h1><p>Our opening hours are nine to five on weekdays and ten to two on Saturdays.</p>"
        b"<h2>Cookies</h2><p>We use cookies only to keep you signed in.</p>"
        b"<footer>Copyright 2024 Acme Inc. All rights reserved.</footer></body></html>"
    )
    doc = parse(loose, filename="help.html")
    assert [(b.headings, b.text) for b in doc.blocks] == [
        ((), "Our opening hours are nine to five on weekdays and ten to two on Saturdays."),
        (("Cookies",), "We use cookies only to keep you signed in."),
    ]


def test_html_fragment_with_many_sections_keeps_every_heading():
    fragment = "".join(
        f"<h2>Question {i}</h2><p>Answer {i}: press the reset button for ten seconds, then wait.</p>"
        for i in range(60)
    )
    doc = parse(fragment.encode(), filename="export.html")
    assert [b.headings for b in doc.blocks][1:] == [(f"Question {i}",) for i in range(1, 60)]


def test_hostile_html_yields_text_never_markup():
    hostile = (
        b"<html><head><title>x</title></head><body><p>Our opening hours are nine to five on weekdays "
        b"and ten to two on Saturdays; we are closed on Sundays.</p>"
        b"<svg><script>alert(1)</script></svg><object data=x>obj</object><template><p>tpl</p></template>"
        b'<noscript><img src=x onerror=alert(2)></noscript><a href="javascript:alert(3)">link text</a>'
        b'<style>p{}</style><iframe srcdoc="<script>alert(4)</script>"></iframe><!-- comment alert(5) -->'
        b"</body></html>"
    )
    doc = parse(hostile, filename="hostile.html")
    everything = "\n".join(b.text for b in doc.blocks)
    assert "opening hours" in everything
    assert "<" not in everything and "alert" not in everything and "onerror" not in everything


def test_absurdly_nested_html_fails_fast_or_gives_text():
    deep = b"<html><body>" + b"<div>" * 100_000 + b"<p>Deep text inside.</p>" + b"</div>" * 100_000
    started = time.monotonic()
    try:
        doc = parse(deep, filename="deep.html")
    except IngestError as error:
        assert error.code in ("empty", "malformed")
    else:
        assert all("<" not in b.text for b in doc.blocks)
    assert time.monotonic() - started < 5


def test_html_without_visible_text_is_empty():
    assert parse_error(b"<html><body><script>x()</script></body></html>", "blank.html").code == "empty"


# --- Markdown and text -------------------------------------------------------------------------


def test_markdown_follows_headings_and_drops_markup():
    source = (
        "---\ntitle: Router guide\nauthor: Support\n---\n"
        "Intro with **bold** and a [link](https://example.com).\n\n"
        "## Setup\n\n- Plug in\n- Wait\n\n```\n# not a heading\n```\n\n"
        "Lights\n------\n\nGreen is fine. <span onclick=x>Really</span><script>alert(1)</script>\n"
    )
    doc = parse(source.encode(), filename="router.md")
    assert doc.title == "Router guide"
    assert doc.blocks == [
        Block("Intro with bold and a link."),
        Block("- Plug in\n- Wait", ("Setup",), anchor="setup"),
        Block("# not a heading", ("Setup",), anchor="setup"),
        Block("Green is fine. Really", ("Lights",), anchor="lights"),
    ]


def test_markdown_title_is_its_first_level_one_heading_and_not_a_section():
    doc = parse(b"# Refunds\n\nMoney back.\n\n## Timing\n\nFive days.", filename="refunds.md")
    assert doc.title == "Refunds"
    assert [b.headings for b in doc.blocks] == [(), ("Timing",)]


def test_text_paragraphs_and_a_short_first_line_as_title():
    doc = parse(b"Opening hours\n\nWe open at nine.\r\n\r\nWe close at five.\n", filename="hours.txt")
    assert (doc.kind, doc.title) == ("text", "Opening hours")
    assert [b.text for b in doc.blocks] == ["We open at nine.", "We close at five."]


def test_untitled_document_is_named_after_its_file():
    assert parse(b"Just one line of text.", filename="docs/store-hours_v2.txt").title == "Store hours v2"


FRENCH = (
    "Le café est ouvert tous les jours de 9 heures à 18 heures. Les commandes passées après midi "
    "sont expédiées le lendemain. Nous acceptons les chèques."
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("\ufeffCaf\u00e9 cr\u00e8me".encode(), "Caf\u00e9 cr\u00e8me"),
        ("Caf\u00e9 cr\u00e8me".encode("utf-16"), "Caf\u00e9 cr\u00e8me"),
        (FRENCH.encode("cp1252"), "Le café est ouvert"),
    ],
)
def test_text_encodings_are_decoded_from_a_bom_or_a_confident_guess(data, expected):
    assert parse(data, filename="note.txt").blocks[0].text.startswith(expected)


def test_text_in_an_encoding_that_cannot_be_told_is_refused():
    assert parse_error("# Caf\u00e9\n\nna\u00efve".encode("latin-1"), "latin1.md").code == "bad_encoding"


def test_binary_bytes_named_txt_are_refused():
    assert (
        parse_error(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8, "notes.txt").code == "binary_content"
    )


def test_language_is_detected_from_the_text():
    german = "Sie k\u00f6nnen jeden Artikel innerhalb von 30 Tagen zur\u00fccksenden und erhalten Ihr Geld."
    assert parse(german.encode(), filename="de.txt").language == "de"
    assert parse(b"OK 42", filename="short.txt").language == ""


# --- FAQ lists ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [("Question,Answer", ","), ("q;a", ";"), ("TITLE\tBODY", "\t")],
)
def test_csv_faq_rows_become_one_faq_block_each(header, delimiter):
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerows([header.split(delimiter), ["Can I return shoes?", "Yes, within 60 days."], ["", "x"]])
    doc = parse(out.getvalue().encode(), filename="faq.csv")
    assert doc.kind == "csv"
    assert doc.blocks == [Block("Q: Can I return shoes?\nA: Yes, within 60 days.", kind="faq")]


def test_csv_faq_category_becomes_the_heading_and_html_answers_become_text():
    answer = "<p>On the <b>1st</b>.</p><script>x()</script>"
    data = f'category,question,answer\nBilling,When am I charged?,"{answer}"'.encode()
    (block,) = parse(data, filename="faq.csv").blocks
    assert block == Block("Q: When am I charged?\nA: On the 1st.", ("Billing",), kind="faq", anchor="billing")


@pytest.mark.parametrize(
    "value",
    [
        [{"Question": "Do you ship abroad?", "Answer": "Yes."}],
        {"faqs": [{"q": "Do you ship abroad?", "a": "Yes."}]},
        {"Title": "Shipping FAQ", "items": [{"title": "Do you ship abroad?", "body": "Yes."}, "junk"]},
    ],
)
def test_json_faq_lists_in_common_shapes(value):
    doc = parse(json.dumps(value).encode(), filename="faq.json")
    assert doc.kind == "json"
    assert doc.blocks == [Block("Q: Do you ship abroad?\nA: Yes.", kind="faq")]


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"name,email\nAnn,ann@example.com\n", "people.csv"),
        (b'[{"name": "Ann"}]', "people.json"),
        (b'{"people": []}', "people.json"),
        (b"{not json", "broken.json"),
        (b"[" * 100_000, "deep.json"),
    ],
)
def test_faq_files_without_question_and_answer_are_malformed(data, filename):
    error = parse_error(data, filename)
    assert error.code == "malformed"


def test_missing_columns_message_says_what_was_found_and_expected():
    error = parse_error(b"name,email\nAnn,ann@example.com\n", "people.csv")
    assert "name, email" in error.message and "question/answer" in error.message


# --- Choosing a loader, and limits -------------------------------------------------------------


def test_supported_suffixes():
    assert {
        ".pdf",
        ".docx",
        ".html",
        ".htm",
        ".md",
        ".markdown",
        ".txt",
        ".csv",
        ".json",
    } == SUPPORTED_SUFFIXES


@pytest.mark.parametrize(
    ("filename", "content_type", "kind"),
    [
        ("returns", "text/html; charset=utf-8", "html"),
        ("guide.md", "text/plain", "markdown"),
        ("guide.md", "application/octet-stream", "markdown"),
        ("download", "text/markdown", "markdown"),
        ("notes.html", "text/plain", "html"),
        ("faq.txt", "application/json", "json"),
    ],
)
def test_content_type_decides_unless_it_is_generic(filename, content_type, kind):
    data = b'[{"q": "Why?", "a": "Because."}]' if kind == "json" else b"<p>Hello there, friend.</p>"
    assert parse(data, filename=filename, content_type=content_type).kind == kind


def test_size_limit_is_checked_before_anything_else():
    assert parse_error(b"x" * 101, "big.exe", max_bytes=100).code == "too_large"
    assert parse(b"x" * 100, filename="ok.txt", max_bytes=100).blocks


@pytest.mark.parametrize("filename", ["setup.exe", "archive.zip", "README"])
def test_unsupported_types_are_named(filename):
    error = parse_error(b"MZ\x90\x00", filename)
    assert error.code == "unsupported_type" and ".pdf" in error.message


@pytest.mark.parametrize("filename", ["empty.txt", "empty.md", "empty.html", "empty.pdf", "empty.csv"])
def test_empty_or_whitespace_documents_are_empty(filename):
    assert parse_error(b" \n\t\r\n ", filename).code == "empty"
    assert parse_error(b"", filename).code == "empty"
