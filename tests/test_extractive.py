"""Quoting the sources (answers/extractive.py, answers/support.quotes) and ending a model's answer
(answers/ending.py), as units with oracle cases. Quotes use the real default embedder."""

from __future__ import annotations

import pytest

from answers.ending import repeats, tidy
from answers.extractive import assess, quoted, reply_text
from answers.prompts import Source
from answers.support import quotes
from retrieval.search import Hit

RETURNS = (
    "Returns at Zephyr Logistics\n\n"
    "Zephyr Logistics accepts returns within 37 days of delivery. Returned parcels must be unopened. "
    "Our depot is in Harderwijk."
)
FEES = (
    "Cancelling your plan > Early termination fee\n\n"
    "If you leave before your 12-month minimum term ends, an early termination fee applies. "
    "It is £10 for each full month remaining, capped at £80."
)
RESET = (
    "Restarting your router > Factory reset\n\n"
    "Use a factory reset only if you forgot the admin password.\n\n"
    "1. Leave the router switched on.\n"
    "2. Press and hold the pinhole button for 15 seconds.\n"
    "3. Release the button.\n"
)


def sources(*texts: str) -> list[Source]:
    return [
        Source(
            n,
            (
                Hit(
                    chunk_id=n * 10,
                    document_id=n,
                    title=f"doc {n}",
                    url="",
                    section="",
                    anchor="",
                    text=text,
                    score=1.0,
                    dense_score=0.5,
                ),
            ),
        )  # fmt: skip
        for n, text in enumerate(texts, start=1)
    ]


pytestmark = pytest.mark.slow


def test_the_sentence_holding_the_questions_rare_words_is_quoted_first(embedder):
    found = quotes("Within how many days can I return a parcel to Zephyr?", sources(RETURNS, FEES))
    assert found[0].text == "Zephyr Logistics accepts returns within 37 days of delivery."
    assert found[0].source == 1 and found[0].chunk == 10


def test_a_chunks_place_line_is_never_quoted_and_steps_are_quoted_whole(embedder):
    found = quotes("How do I factory reset my router?", sources(RESET), limit=5)
    texts = [q.text for q in found]
    assert not any(t.startswith("Restarting your router") for t in texts)
    steps = next(t for t in texts if t.startswith("1."))
    assert "15 seconds" in steps and steps.endswith("Release the button.")


def test_a_question_for_an_amount_gets_the_sentence_that_states_it(embedder, settings):
    settings.ANSWER_MIN_CONFIDENCE = 0.0
    assessment = assess("What is the early termination fee?", sources(FEES))
    text = quoted(assessment.quotes)
    assert "£10 for each full month" in text and text.endswith("[1]")
    assert assessment.sure


def test_a_question_for_a_number_that_no_source_sentence_states_is_not_sure(embedder, settings):
    settings.ANSWER_MIN_CONFIDENCE = 0.0
    depot = "Our depot\n\nOur depot is in Harderwijk. It opens on working days and is closed on Sundays."
    assessment = assess("When does the Harderwijk depot open in the morning?", sources(depot))
    assert assessment.quotes and not assessment.sure


def test_below_the_confidence_setting_the_reply_is_not_sure_with_the_closest_passage_and_a_person(
    embedder, settings
):
    settings.ANSWER_MIN_CONFIDENCE = 0.99
    assessment = assess("Can you collect a return from my office?", sources(RETURNS))
    assert not assessment.sure
    reply = reply_text(assessment)
    assert reply.startswith("I'm not sure") and "The closest I found:" in reply and "person" in reply
    assert "[1]" in reply


def test_the_not_sure_reply_speaks_the_visitors_language(embedder, settings):
    settings.ANSWER_MIN_CONFIDENCE = 0.99
    assessment = assess("Kann ich ein Paket von Zephyr Logistics zurückschicken?", sources(RETURNS))
    reply = reply_text(assessment)
    assert reply.startswith("Ich bin nicht sicher")
    assert "nur auf Englisch" in reply  # the sources are English: said so, then quoted


def test_several_sentences_of_one_source_share_one_citation_mark():
    from answers.support import Quote

    found = [
        Quote("B said.", 2, 20, 1.0, 0.5),
        Quote("A said.", 1, 10, 1.2, 0.5),
        Quote("A too.", 1, 11, 1.1, 0.5),
    ]
    assert quoted(found) == "A said. A too. [1] B said. [2]"


def test_a_loop_is_cut_before_it_starts_and_a_capped_answer_ends_at_its_last_sentence():
    looping = "Tablets are small. Tablets running on tablets running on tablets running on tablets run"
    assert repeats(looping)
    assert tidy(looping, cut=False) == "Tablets are small."
    assert tidy("Open the app. Tap Settings [1]. And then", cut=True) == "Open the app. Tap Settings [1]."
    assert tidy("Open the app. Tap Settings and", cut=False) == "Open the app. Tap Settings and"
    assert tidy("no sentence end at all", cut=True) == "no sentence end at all"  # nothing to fall back to
    assert not repeats("Hold the button for 15 seconds. Then release the button and wait.")


def test_a_table_row_is_quoted_with_its_column_names(embedder):
    plans = (
        "Broadband plans > Our plans\n\nPlan | Download | Monthly price\n"
        "Spark 150 | 150 Mbps | £25\nGigabit 1000 | 1000 Mbps | £50\n"
    )
    found = quotes("How much does the Gigabit plan cost?", sources(plans), limit=1)
    assert found[0].text == "Plan: Gigabit 1000; Download: 1000 Mbps; Monthly price: £50."


def test_a_remembering_embedder_embeds_each_text_once_and_keeps_the_order():
    import numpy as np

    from answers.support import remembering

    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)

    cached = remembering(embed)
    first = cached(["aa", "b", "aa"])
    second = cached(["b", "ccc"])
    assert calls == [["aa", "b"], ["ccc"]]
    assert first[:, 0].tolist() == [2.0, 1.0, 2.0] and second[:, 0].tolist() == [1.0, 3.0]


def test_a_question_in_another_language_gets_the_source_quoted_and_says_in_which_language(embedder, settings):
    settings.ANSWER_MIN_CONFIDENCE = 0.0
    assessment = assess(
        "Wie viele Tage habe ich für eine Rücksendung bei Zephyr Logistics?", sources(RETURNS)
    )
    assert assessment.sure and assessment.language == "de"
    reply = reply_text(assessment)
    assert reply.startswith("Unsere Unterlagen dazu gibt es nur auf Englisch:")
    assert "37 days" in reply


def test_when_not_sure_only_the_one_sentence_shown_is_cited_and_recorded(embedder, settings):
    from answers.extractive import quoted_reply

    settings.ANSWER_MIN_CONFIDENCE = 0.99
    reply = quoted_reply("Can Zephyr Logistics collect a return from my office?", sources(RETURNS, FEES))
    assert reply.text.startswith("I'm not sure") and not reply.checked.sure
    assert len(reply.cited) == 1
    assert len(reply.checked.support) == 1 and reply.checked.support[0]["source"] in reply.cited
