"""Chunking follows the parsed structure: one section path and one page per chunk, packed up to
`size` tokens with overlap inside a section, FAQ pairs whole, the same output for the same input."""

from __future__ import annotations

import re

import pytest

from retrieval.chunking import ChunkDraft, chunk_document, chunk_markdown, count_tokens, markdown_title
from retrieval.loaders import Block, ParsedDocument


def sentences(prefix: str, n: int) -> str:
    return " ".join(f"{prefix} sentence number {i} ends here." for i in range(n))


def body(draft: ChunkDraft) -> str:
    return draft.text.split("\n\n", 1)[1]


def doc(*blocks: Block, title: str = "Guide") -> ParsedDocument:
    return ParsedDocument(title=title, blocks=list(blocks), kind="markdown")


def test_each_chunk_starts_with_its_section_path_and_a_blank_line():
    drafts = chunk_document(doc(Block("Intro."), Block("Plug it in.", ("Setup", "Cables"), anchor="cables")))
    assert [d.text for d in drafts] == ["Guide\n\nIntro.", "Guide > Setup > Cables\n\nPlug it in."]
    assert [(d.section, d.anchor) for d in drafts] == [("Guide", ""), ("Guide > Setup > Cables", "cables")]
    assert all(d.token_count == count_tokens(d.text) for d in drafts)


def test_short_paragraphs_of_one_section_are_packed_together():
    drafts = chunk_document(doc(Block("First."), Block("Second."), Block("Third.")))
    assert [body(d) for d in drafts] == ["First.\n\nSecond.\n\nThird."]


def test_chunks_never_cross_headings_or_pages():
    blocks = [
        Block("Page one, setup.", ("Setup",), page=1),
        Block("Page two, still setup.", ("Setup",), page=2),
        Block("Page two, lights.", ("Lights",), page=2),
        Block("Back to setup on page two.", ("Setup",), page=2),
    ]
    drafts = chunk_document(doc(*blocks))
    assert [(d.section, d.page, body(d)) for d in drafts] == [
        ("Guide > Setup", 1, "Page one, setup."),
        ("Guide > Setup", 2, "Page two, still setup."),
        ("Guide > Lights", 2, "Page two, lights."),
        ("Guide > Setup", 2, "Back to setup on page two."),
    ]


@pytest.mark.parametrize(("size", "overlap"), [(40, 0), (60, 10), (120, 40), (200, 40)])
def test_chunks_respect_the_size_and_lose_no_text(size, overlap):
    paragraphs = [sentences("Alpha", 3), sentences("Beta", 30), "word " * 500, sentences("Gamma", 2)]
    drafts = chunk_document(
        doc(*(Block(p.strip(), ("Setup",)) for p in paragraphs)), size=size, overlap=overlap
    )
    assert all(d.token_count <= size for d in drafts)
    joined = " ".join(body(d) for d in drafts)
    for expected in re.findall(r"\w+ sentence number \d+ ends here\.", " ".join(paragraphs)):
        assert expected in joined
    assert joined.count("word") >= 500


def test_a_long_paragraph_is_split_at_sentence_ends():
    drafts = chunk_document(doc(Block(sentences("Alpha", 40))), size=60, overlap=0)
    assert len(drafts) > 3
    assert all(body(d).endswith("ends here.") and body(d).startswith("Alpha") for d in drafts)


def test_a_paragraph_without_sentences_is_split_at_words_and_a_huge_word_at_characters():
    drafts = chunk_document(doc(Block("lorem " * 300 + "/".join(["x"] * 200))), size=50, overlap=0)
    assert all(d.token_count <= 50 for d in drafts)
    assert sum(body(d).count("lorem") for d in drafts) == 300


def test_lines_of_a_long_list_stay_whole():
    items = "\n".join(f"- Step {i}: press the button labelled {i}" for i in range(40))
    drafts = chunk_document(doc(Block(items)), size=60, overlap=0)
    for draft in drafts:
        assert all(
            re.fullmatch(r"- Step \d+: press the button labelled \d+", line)
            for line in body(draft).split("\n")
        )


def test_overlap_repeats_the_end_of_a_chunk_at_the_start_of_the_next():
    drafts = chunk_document(doc(Block(sentences("Alpha", 40), ("Setup",))), size=80, overlap=20)
    for previous, following in zip(drafts, drafts[1:], strict=False):
        carried, rest = body(following).split("\n\n", 1)
        assert rest and count_tokens(carried) <= 20
        assert body(previous).endswith(carried)


def test_overlap_never_crosses_sections():
    drafts = chunk_document(
        doc(Block(sentences("Alpha", 20), ("A",)), Block(sentences("Beta", 20), ("B",))), size=60, overlap=20
    )
    assert all("Alpha" not in body(d) for d in drafts if d.section == "Guide > B")


def test_each_faq_pair_is_its_own_chunk_never_split_even_when_long():
    long_answer = "Q: Why?\nA: " + sentences("Because", 50)
    blocks = [
        Block("Q: Can I return shoes?\nA: Yes.", ("Returns",), kind="faq"),
        Block(long_answer, kind="faq"),
    ]
    blocks.append(Block("Q: Can I return shoes?\nA: Yes.", ("Returns",), kind="faq"))
    drafts = chunk_document(doc(*blocks), size=40, overlap=10)
    assert [body(d) for d in drafts] == [b.text for b in blocks]
    assert all(d.kind == "faq" for d in drafts)
    assert drafts[1].token_count > 40


def test_custom_token_counter_sets_the_budget():
    def by_characters(text: str) -> int:
        return len(text)

    drafts = chunk_document(
        doc(Block(sentences("Alpha", 20))), size=200, overlap=0, count_tokens=by_characters
    )
    assert len(drafts) > 3
    assert all(d.token_count == len(d.text) <= 200 for d in drafts)


def test_output_is_deterministic():
    source = doc(*(Block(sentences(f"P{i}", 12), (f"H{i % 3}",)) for i in range(12)))
    assert chunk_document(source, size=70, overlap=15) == chunk_document(source, size=70, overlap=15)


def test_very_long_section_paths_are_capped_for_the_database():
    drafts = chunk_document(doc(Block("Text.", tuple(f"Heading {i} " * 10 for i in range(20)))))
    assert len(drafts[0].section) <= 500


def test_chunk_markdown_still_takes_text_and_a_title():
    text = (
        "# Guide\n\nIntro line.\n\n## Setup\n\n" + sentences("Cable", 40) + "\n\n## Lights\n\nGreen is fine."
    )
    drafts = chunk_markdown(text, "Guide", size=60, overlap=10)
    assert {d.section for d in drafts} == {"Guide", "Guide > Setup", "Guide > Lights"}
    assert all(d.token_count <= 60 for d in drafts)
    assert [d.anchor for d in drafts if d.section == "Guide > Lights"] == ["lights"]
    assert markdown_title(text, fallback="x") == "Guide"
    assert markdown_title("No heading here.", fallback="Fallback") == "Fallback"
