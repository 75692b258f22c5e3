"""`manage.py eval_answers`: SQuAD-format questions through the real answer path, scored; and the
scoring rules themselves (SQuAD normalisation, the invented-detail detector, the baseline)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from assistant.chat.evaluation import (
    best_sentence,
    contains_gold,
    load_squad,
    normalize_answer,
    unsupported_terms,
)

PARAGRAPHS = [
    (
        "The Quillmore ferry crosses Lake Venn twice a day. It leaves Harlow Pier at 7 in the "
        "morning and returns at 6 in the evening. A single ticket costs 14 crowns.",
        [
            ("When does the Quillmore ferry leave Harlow Pier?", ["7 in the morning"]),
            ("How much does a single ferry ticket cost?", ["14 crowns"]),
            ("How much does a return ticket on the ferry to Harlow Pier cost?", []),
        ],
    ),
    (
        "Brannock Library was founded by the weaver Ottilie Brannock. It holds 9,000 maps of the "
        "northern coast and opens on Saturdays only.",
        [
            ("Who founded Brannock Library?", ["Ottilie Brannock", "the weaver Ottilie Brannock"]),
            ("Who closed Brannock Library on Saturdays?", []),
        ],
    ),
]


def squad_file(tmp_path):
    data = {
        "version": "v2.0",
        "data": [
            {
                "title": "Invented_places",
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "question": question,
                                "id": f"{p}-{q}",
                                "answers": [{"text": a, "answer_start": context.find(a)} for a in answers],
                                "is_impossible": not answers,
                            }
                            for q, (question, answers) in enumerate(qas)
                        ],
                    }
                    for p, (context, qas) in enumerate(PARAGRAPHS)
                ],
            }
        ],
    }
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.slow
@pytest.mark.django_db
def test_eval_answers_prints_every_metric_and_leaves_no_collection_behind(tmp_path, embedder, text_generator):
    from django.conf import settings

    from assistant.models import Conversation
    from retrieval.models import Document

    out = StringIO()
    call_command("eval_answers", "--squad", str(squad_file(tmp_path)), "--limit", "3", stdout=out)
    result = json.loads(out.getvalue())

    assert result["answerable"] == 3 and result["unanswerable"] == 2
    for key in ("fact", "cite", "decline", "false_decline", "unsupported", "baseline_fact"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["median_words"] is None or result["median_words"] >= 0
    assert result["confidence_auc"] is None or 0.0 <= result["confidence_auc"] <= 1.0
    assert result["verified"] is None or 0.0 <= result["verified"] <= 1.0
    assert result["seconds_per_answer"] > 0
    assert result["max_answer_tokens"] == settings.CHAT_MAX_ANSWER_TOKENS
    assert not Document.objects.filter(collection__startswith="eval-").exists()
    assert not Conversation.objects.filter(collection__startswith="eval-").exists()
    assert not list(settings.INDEX_DIR.glob("eval-*"))


SAMPLE = Path(__file__).parent / "data" / "squad2-sample.json"


@pytest.mark.slow
@pytest.mark.django_db
def test_on_public_squad_questions_answers_state_nothing_the_sources_do_not(embedder):
    """20 public SQuAD 2.0 questions (10 unanswerable) over the 48 paragraphs of their article,
    through the default answer path: the JSON has every figure, almost no answer names a number
    or name found in neither its sources nor the question, and answers hold the gold fact at
    least as often as the one-sentence extractive baseline."""
    out = StringIO()
    call_command("eval_answers", "--squad", str(SAMPLE), stdout=out)
    result = json.loads(out.getvalue())

    assert result["answerable"] == 10 and result["unanswerable"] == 10
    for key in ("fact", "cite", "decline", "false_decline", "unsupported", "baseline_fact", "verified"):
        assert 0.0 <= result[key] <= 1.0, key
    assert [point["threshold"] for point in result["decline_curve"]] == sorted(
        point["threshold"] for point in result["decline_curve"]
    )
    assert result["unsupported"] <= 0.05
    assert result["fact"] >= result["baseline_fact"]


def test_limit_takes_the_first_answerable_and_unanswerable_questions_in_file_order(tmp_path):
    paragraphs, questions = load_squad(squad_file(tmp_path), limit=1)
    assert len(paragraphs) == 2  # every paragraph is still ingested
    assert [(q.text, q.answerable) for q in questions] == [
        ("When does the Quillmore ferry leave Harlow Pier?", True),
        ("How much does a return ticket on the ferry to Harlow Pier cost?", False),
    ]


def test_squad_normalisation_ignores_case_punctuation_and_articles():
    assert normalize_answer("The  Turing machine!") == "turing machine"
    assert contains_gold("It was founded by the weaver, Ottilie Brannock [1].", ["Ottilie Brannock"])
    assert contains_gold("A ticket costs 14 crowns.", ["the 14 crowns"])


def test_gold_answers_match_whole_words_only():
    assert not contains_gold("It costs 140 crowns.", ["14 crowns"])
    assert not contains_gold("Nothing here.", ["the"])  # a gold answer that normalises to nothing


SOURCE = "Brannock Library was founded by Ottilie Brannock. It holds 9,000 maps."


def test_a_number_or_name_in_the_sources_is_supported():
    assert (
        unsupported_terms("It holds 9,000 maps, says Ottilie Brannock [1].", SOURCE, "How many maps?") == []
    )


def test_an_invented_number_or_name_is_flagged():
    assert unsupported_terms("It holds 12,000 maps.", SOURCE, "How many maps?") == ["12"]
    assert unsupported_terms("It was founded by Edmund Hale.", SOURCE, "Who?") == ["Edmund", "Hale"]


def test_a_name_from_the_question_is_supported_and_sentence_starts_are_not_names():
    assert unsupported_terms("Yes, Harlow is near. Maps are there.", SOURCE, "Is Harlow near?") == []


def test_the_baseline_picks_the_sentence_sharing_most_words_with_the_question():
    passage = PARAGRAPHS[0][0]
    assert best_sentence("How much does a single ticket cost?", passage).startswith("A single ticket costs")
