"""Exports of an approved article (content/export/): pure functions, no database."""

from __future__ import annotations

import io
import json
import zipfile
from html.parser import HTMLParser

import frontmatter
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from content import export
from content.export import page

HOSTILE = "<script>alert(1)</script>"
CLOSING_QUESTION = "</script><script>alert(1)</script>"


def make_png(color=(200, 30, 30), size=(6, 4), **text: str) -> bytes:
    info = PngInfo()
    for key, value in text.items():
        info.add_text(f"parley:{key}", value)
    image = Image.new("RGB", size)
    image.putdata(
        [(color[0], (x * 40) % 256, (y * 60) % 256) for y in range(size[1]) for x in range(size[0])]
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def make_image(filename="hero-1.png", alt="A walker on a green hill", meaningful=True) -> dict:
    return {
        "filename": filename,
        "alt": alt,
        "prompt": "a walker on a green hill, morning light",
        "negative_prompt": "text, watermark",
        "seed": 1234,
        "steps": 4,
        "guidance": 1.5,
        "width": 6,
        "height": 4,
        "model_version": "tiny-sd@1",
        "meaningful": meaningful,
        "png": make_png(
            prompt="a walker on a green hill, morning light", seed="1234", model_version="tiny-sd@1"
        ),
    }


def make_item(**overrides) -> dict:
    item = {
        "id": 42,
        "state": "approved",
        "language": "en",
        "keyphrase": "hill walking for beginners",
        "title": "Hill walking for beginners",
        "meta_title": "Hill walking for beginners: a practical guide",
        "meta_description": "What to pack, how to pace yourself and where to start.",
        "slug": "hill-walking-for-beginners",
        "body": (
            "# Hill walking for beginners\n\n"
            "Start small and enjoy the view. Read [our boots guide](https://example.com/boots).\n\n"
            "## What to pack\n\nWater, a map and a warm layer.\n\n"
            "## Pacing\n\nWalk at a pace at which you can still talk.\n"
        ),
        "faq": [
            {"question": "How long is a first walk?", "answer": "About **two hours** is plenty."},
            {"question": "Do I need poles?", "answer": "No, but they help on the way down."},
        ],
        "images": [make_image()],
        "approved_by": "editor@example.com",
        "approved_at": "2025-03-01T10:00:00+00:00",
        "published_at": None,
        "model_version": "qwen-tiny@2",
        "prompt_template": "article-v3",
        "revision": 3,
    }
    item.update(overrides)
    return item


class Page(HTMLParser):
    """What a browser would find in the page: tags with attributes, scripts with their text."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[str | None, str]] = []
        self.title = ""
        self._open: str | None = None
        self.feed(document)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open = tag
        if tag == "script":
            self.scripts.append((dict(attrs).get("type"), ""))

    def handle_endtag(self, tag):
        self._open = None

    def handle_data(self, data):
        if self._open == "script":
            kind, text = self.scripts[-1]
            self.scripts[-1] = (kind, text + data)
        elif self._open == "title":
            self.title += data

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def jsonld(self) -> dict:
        [(kind, text)] = self.scripts
        assert kind == "application/ld+json"
        return json.loads(text)


def assert_valid_faq_page(data: dict, questions: list[str]) -> None:
    assert data["@context"] == "https://schema.org"
    assert data["@type"] == "FAQPage"
    assert [entry["@type"] for entry in data["mainEntity"]] == ["Question"] * len(questions)
    assert [entry["name"] for entry in data["mainEntity"]] == questions
    for entry in data["mainEntity"]:
        assert entry["acceptedAnswer"]["@type"] == "Answer"
        assert entry["acceptedAnswer"]["text"]


# --- Markdown -------------------------------------------------------------------------------


def test_markdown_front_matter_parses_back_with_the_article_fields():
    post = frontmatter.loads(export.to_markdown(make_item()))

    assert post["title"] == "Hill walking for beginners"
    assert post["meta_title"] == "Hill walking for beginners: a practical guide"
    assert post["description"] == "What to pack, how to pace yourself and where to start."
    assert post["slug"] == "hill-walking-for-beginners"
    assert post["lang"] == "en"
    assert post["keyphrase"] == "hill walking for beginners"
    assert post["images"] == [
        {"filename": "hero-1.png", "alt": "A walker on a green hill", "ai_generated": True}
    ]
    assert post["generated_with"] == {"model_version": "qwen-tiny@2", "prompt_template": "article-v3"}
    assert post["approved_by"] == "editor@example.com"
    assert post["approved_at"] == "2025-03-01T10:00:00+00:00"  # a string, not a YAML timestamp
    assert post["revision"] == 3
    assert post.content.startswith("# Hill walking for beginners\n")


def test_markdown_puts_unreferenced_images_after_the_h1_and_appends_the_faq():
    body = frontmatter.loads(export.to_markdown(make_item())).content

    assert body.startswith(
        "# Hill walking for beginners\n\n![A walker on a green hill](images/hero-1.png)\n\nStart small"
    )
    assert body.index("## Pacing") < body.index("## FAQ")
    assert "### How long is a first walk?\n\nAbout **two hours** is plenty." in body
    assert "### Do I need poles?\n\nNo, but they help on the way down." in body


def test_markdown_keeps_the_bodys_own_faq_and_image_references():
    item = make_item(
        body=(
            "# Walks\n\nIntro.\n\n![Our hero](images/hero-1.png)\n\n"
            "## Frequently asked questions\n\nAsk us.\n"
        )
    )

    body = frontmatter.loads(export.to_markdown(item)).content

    assert body.count("hero-1.png") == 1
    assert "## FAQ" not in body
    assert "Do I need poles?" not in body


def test_markdown_without_h1_gets_the_title_as_h1():
    body = frontmatter.loads(export.to_markdown(make_item(body="Just a paragraph.\n"))).content

    assert body.startswith("# Hill walking for beginners\n\n![A walker")


def test_markdown_escapes_markup_in_alt_text_and_questions():
    item = make_item(
        images=[make_image(alt="A [hill] *walk*")],
        faq=[{"question": "Is C# or _Python_ better?", "answer": "Neither."}],
    )

    markdown = export.to_markdown(item)
    html = export.to_html(item)

    assert r"![A \[hill\] \*walk\*](images/hero-1.png)" in markdown
    assert r"### Is C\# or \_Python\_ better?" in markdown
    assert Page(html).all("img")[0]["alt"] == "A [hill] *walk*"
    assert "<h3>Is C# or _Python_ better?</h3>" in html


# --- HTML -----------------------------------------------------------------------------------


def test_html_is_a_complete_document_with_one_h1_and_the_meta_tags():
    item = make_item(body=make_item()["body"] + "\n# A second H1 the model should not have written\n")

    html = export.to_html(item)
    page = Page(html)

    assert html.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert html.rstrip().endswith("</html>")
    assert page.title == "Hill walking for beginners: a practical guide"
    assert page.all("meta")[0] == {"charset": "utf-8"}
    assert {
        "name": "description",
        "content": "What to pack, how to pace yourself and where to start.",
    } in page.all("meta")
    assert len(page.all("h1")) == 1
    assert page.all("link") == []  # no canonical without a base URL
    assert {"href": "https://example.com/boots", "rel": "noopener"} in page.all("a")


def test_html_canonical_link_needs_a_base_url_and_refuses_other_schemes():
    page = Page(export.to_html(make_item(), base_url="https://example.com/blog/"))

    assert page.all("link") == [
        {"rel": "canonical", "href": "https://example.com/blog/hill-walking-for-beginners"}
    ]
    with pytest.raises(export.ExportError) as caught:
        export.to_html(make_item(), base_url="javascript:alert(1)//")
    assert caught.value.code == "bad_base_url"


def test_html_jsonld_is_a_valid_faq_page_matching_faq_jsonld():
    item = make_item()

    data = Page(export.to_html(item)).jsonld()

    assert_valid_faq_page(data, ["How long is a first walk?", "Do I need poles?"])
    assert data["mainEntity"][0]["acceptedAnswer"]["text"] == "About two hours is plenty."  # no Markdown
    assert data == export.faq_jsonld(item)


def test_html_shows_the_faq_and_leaves_jsonld_out_when_there_is_none():
    page = Page(export.to_html(make_item()))
    assert [attrs for name, attrs in page.tags if name == "h3"] == [{}, {}]

    empty = make_item(faq=[])
    assert export.faq_jsonld(empty) is None
    assert Page(export.to_html(empty)).scripts == []
    assert "<h2>FAQ</h2>" not in export.to_html(empty)


def test_html_images_carry_alt_size_and_an_ai_caption():
    item = make_item(images=[make_image(), make_image("offline-2.png", alt="Placeholder", meaningful=False)])

    html = export.to_html(item)
    page = Page(html)

    assert page.all("img") == [
        {"src": "images/hero-1.png", "alt": "A walker on a green hill", "width": "6", "height": "4"},
        {"src": "images/offline-2.png", "alt": "Placeholder", "width": "6", "height": "4"},
    ]
    assert html.count("<figcaption>AI-generated image</figcaption>") == 1
    assert (
        "<figcaption>AI-generated image: placeholder from the built-in offline model: not a real picture"
        "</figcaption>" in html
    )


def test_html_captions_an_image_the_body_shows_inline():
    item = make_item(body="# Walks\n\nHere ![the hill](hero-1.png) is.\n")

    html = export.to_html(item)

    assert '<img src="images/hero-1.png" alt="A walker on a green hill" width="6" height="4">' in html
    assert "<small>(AI-generated image)</small>" in html
    assert html.count("<img") == 1


def test_hostile_content_is_inert_in_html():
    item = make_item(
        title=f"Walks {HOSTILE}",
        meta_title=f"Walks {HOSTILE}",
        meta_description=f'"><script>alert(1)</script> {HOSTILE}',
        body=(
            f"# Walks {HOSTILE}\n\n"
            f'Text {HOSTILE} and <img src=x onerror=alert(1)> and <a href="javascript:alert(1)">raw</a>.\n\n'
            "[click](javascript:alert%281%29) and <javascript:alert(1)> and [fine](/about).\n\n"
            "![tracker](data:image/svg+xml;base64,PHN2Zz4=)\n"
        ),
        faq=[
            {"question": CLOSING_QUESTION, "answer": f"Answer {HOSTILE} & more <!-- comment"},
            {"question": f"Plain {HOSTILE}?", "answer": "Yes."},
        ],
        images=[make_image(alt=f'{HOSTILE}" onerror="alert(1)')],
    )

    html = export.to_html(item, base_url="https://example.com/")
    page = Page(html)

    # One script in the whole page, and it is the data block, whose JSON still says everything.
    data = page.jsonld()
    assert_valid_faq_page(data, [CLOSING_QUESTION, f"Plain {HOSTILE}?"])
    assert data["mainEntity"][0]["acceptedAnswer"]["text"] == f"Answer {HOSTILE} & more <!-- comment"
    assert html.count("<script") == 1
    # No event handlers, no javascript: or data: URLs, anywhere.
    for _tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs)
        for name in ("href", "src"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("javascript:", "data:"))
    assert {"href": "/about", "rel": "noopener"} in page.all("a")
    # The text is shown as text.
    assert page.title == f"Walks {HOSTILE}"
    assert page.all("img")[0]["alt"] == f'{HOSTILE}" onerror="alert(1)'
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<h3>&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;</h3>" in html
    assert len(page.all("h1")) == 1


def test_sanitiser_catches_html_that_gets_past_the_markdown_renderer(monkeypatch):
    leaked = (
        '<h2 onclick="x()">Hi</h2><script>alert(1)</script><iframe src="https://e.com"></iframe>'
        '<a href="javascript:alert(1)">a</a><a href="https://e.com" target="_blank">b</a>'
        '<img src="data:image/png;base64,AA" onerror="x()"><style>*{}</style>'
    )
    monkeypatch.setattr(page, "_render_markdown", lambda markdown, images: leaked)

    html = export.to_html(make_item(faq=[]))

    assert '<h2>Hi</h2><a rel="noopener">a</a><a href="https://e.com" rel="noopener">b</a><img>' in html
    assert "<script" not in html and "iframe" not in html and "<style" not in html


def test_jsonld_cannot_close_its_script_element():
    text = page._script_json({"q": "</script><!-- & --> \u2028"})

    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"q": "</script><!-- & --> \u2028"}


# --- JSON -----------------------------------------------------------------------------------


def test_json_has_everything_but_the_png_bytes():
    item = make_item()

    data = export.to_json(item)

    json.dumps(data)  # serialisable
    assert {key: data[key] for key in item if key not in {"images", "faq"}} == {
        key: value for key, value in item.items() if key not in {"images", "faq"}
    }
    assert data["faq"] == item["faq"]
    assert data["faq_jsonld"] == export.faq_jsonld(item)
    [image] = data["images"]
    assert "png" not in image
    assert image["prompt"] == "a walker on a green hill, morning light"
    assert image["seed"] == 1234
    assert image["path"] == "images/hero-1.png"
    assert image["ai_generated"] is True
    assert "png" in item["images"][0]  # the item itself is left alone


# --- images ---------------------------------------------------------------------------------


def test_png_metadata_is_kept_as_is_or_stripped_with_identical_pixels():
    image = make_image()

    kept = export.image_bytes(image, strip_metadata=False)
    stripped = export.image_bytes(image, strip_metadata=True)

    assert kept == image["png"]
    assert export.png_metadata(kept) == {
        "prompt": "a walker on a green hill, morning light",
        "seed": "1234",
        "model_version": "tiny-sd@1",
    }
    assert export.png_metadata(stripped) == {}
    assert Image.open(io.BytesIO(stripped)).text == {}
    with Image.open(io.BytesIO(kept)) as before, Image.open(io.BytesIO(stripped)) as after:
        assert (after.format, after.mode, after.size) == ("PNG", before.mode, before.size)
        assert after.tobytes() == before.tobytes()


def test_stripping_keeps_a_palette_images_colours_and_transparency():
    source = Image.new("P", (3, 2))
    source.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    source.putdata([0, 1, 2, 2, 1, 0])
    info = PngInfo()
    info.add_text("parley:seed", "9")
    buffer = io.BytesIO()
    source.save(buffer, format="PNG", pnginfo=info, transparency=0)

    stripped = export.image_bytes({"filename": "p.png", "png": buffer.getvalue()}, strip_metadata=True)

    with Image.open(io.BytesIO(buffer.getvalue())) as before, Image.open(io.BytesIO(stripped)) as after:
        assert after.mode == "P"
        assert after.convert("RGBA").tobytes() == before.convert("RGBA").tobytes()
        assert after.convert("RGBA").getpixel((0, 0)) == (0, 0, 0, 0)  # index 0 is still transparent
    assert export.png_metadata(stripped) == {}


def test_unreadable_or_missing_png_is_an_export_error():
    with pytest.raises(export.ExportError) as caught:
        export.image_bytes({"filename": "x.png", "png": b"not a png"}, strip_metadata=True)
    assert caught.value.code == "unreadable_image"
    truncated = make_png(size=(64, 64))[:-40]
    with pytest.raises(export.ExportError) as caught:
        export.png_metadata(truncated)
    assert caught.value.code == "unreadable_image"
    with pytest.raises(export.ExportError) as caught:
        export.image_bytes({"filename": "x.png", "png": None}, strip_metadata=False)
    assert caught.value.code == "missing_image"


@pytest.mark.parametrize("filename", ["../evil.png", "a/b.png", "C:\\x.png", ".hidden.png", "", "a\nb.png"])
def test_image_filenames_that_could_leave_the_images_folder_are_refused(filename):
    with pytest.raises(export.ExportError) as caught:
        export.bundle(make_item(images=[make_image(filename)]))
    assert caught.value.code == "bad_image_filename"


# --- bundle ---------------------------------------------------------------------------------


def test_bundle_has_every_file_and_strips_image_metadata_on_request():
    item = make_item(images=[make_image(), make_image("detail-2.png")])

    for strip in (False, True):
        archive = zipfile.ZipFile(io.BytesIO(export.bundle(item, strip_metadata=strip)))

        assert sorted(archive.namelist()) == [
            "article.html",
            "article.json",
            "article.md",
            "images/detail-2.png",
            "images/hero-1.png",
        ]
        assert archive.testzip() is None
        assert archive.read("article.md").decode() == export.to_markdown(item)
        assert archive.read("article.html").decode() == export.to_html(item)
        assert json.loads(archive.read("article.json")) == export.to_json(item)
        metadata = export.png_metadata(archive.read("images/hero-1.png"))
        assert (metadata == {}) is strip
        assert archive.getinfo("images/hero-1.png").date_time == (2025, 3, 1, 10, 0, 0)


def test_bundle_of_the_same_item_is_byte_identical():
    assert export.bundle(make_item()) == export.bundle(make_item())


# --- unicode --------------------------------------------------------------------------------


def test_unicode_survives_every_format():
    words = "Grüße aus München: Größe, Übung & Spaß 🎉🥾"
    item = make_item(
        title=words,
        meta_title=words,
        meta_description=words,
        keyphrase="wandern für anfänger",
        body=f"# {words}\n\nÄpfel, Öl und Straße. 🏔️\n",
        faq=[{"question": f"Was heißt {words}?", "answer": "Schön! 😀"}],
        images=[make_image("hügel-1.png", alt=f"Hügel {words}")],
    )

    post = frontmatter.loads(export.to_markdown(item))
    assert post["title"] == post["meta_title"] == post["description"] == words
    assert post["images"][0] == {"filename": "hügel-1.png", "alt": f"Hügel {words}", "ai_generated": True}
    assert "🎉🥾" in export.to_markdown(item).split("---")[1]  # written as itself, not as \U escapes
    assert "Äpfel, Öl und Straße. 🏔️" in post.content

    html = export.to_html(item)
    page = Page(html)
    assert page.title == words
    assert "Äpfel, Öl und Straße. 🏔️" in html
    assert page.all("img")[0] == {
        "src": "images/h%C3%BCgel-1.png",
        "alt": f"Hügel {words}",
        "width": "6",
        "height": "4",
    }
    assert page.jsonld()["mainEntity"][0]["name"] == f"Was heißt {words}?"
    assert page.jsonld()["mainEntity"][0]["acceptedAnswer"]["text"] == "Schön! 😀"

    data = json.loads(json.dumps(export.to_json(item), ensure_ascii=False))
    assert data["title"] == words
    assert data["faq"][0]["answer"] == "Schön! 😀"

    archive = zipfile.ZipFile(io.BytesIO(export.bundle(item)))
    assert "images/hügel-1.png" in archive.namelist()
    assert json.loads(archive.read("article.json"))["images"][0]["alt"] == f"Hügel {words}"
    assert words in archive.read("article.md").decode()
