"""The verifier as a unit (answers/verification.py): oracle cases for what an answer may state.

The embedding side uses the real default embedder (all-MiniLM-L6-v2, the session fixture)."""

from __future__ import annotations

import pytest

from answers.verification import SourceText, Vocabulary, split_sentences, stated_facts, unknown_facts, verify

pytestmark = pytest.mark.slow

ZEPHYR = SourceText(
    11,
    "Zephyr Logistics accepts returns within 37 days of delivery. Returns are free of charge.",
)
DELIVERY = SourceText(
    12,
    "Standard parcels are delivered between 08:00 and 18:00 on working days. "
    "Express parcels arrive before noon.",
)
QUESTION = "How long do I have to return a parcel?"


@pytest.fixture(scope="module")
def check(embedder):
    def run(answer, sources=(ZEPHYR, DELIVERY), question=QUESTION):
        return verify(answer, list(sources), question=question, embed=embedder.embed)

    return run


def test_a_sentence_stating_the_sources_fact_is_supported_by_that_source(check):
    result = check("You can return a parcel within 37 days of delivery [1].")
    (sentence,) = result.sentences
    assert sentence.verdict == "supported" and sentence.chunk == ZEPHYR.chunk
    assert "37 days" in sentence.evidence
    assert result.all_supported and result.confidence > 0


def test_a_number_the_sources_do_not_contain_is_unsupported(check):
    result = check("You can return a parcel within 3 working days of delivery.")
    assert result.sentences[0].verdict == "unsupported"
    assert result.sentences[0].unknown == ("3",)
    assert result.confidence == 0 and not result.all_supported


def test_a_name_the_sources_do_not_contain_is_unsupported(check):
    result = check("Bring the parcel to our depot in Harderwijk within 37 days.")
    assert result.sentences[0].unknown == ("Harderwijk",)
    assert check("Christopher Columbus delivered the first parcel.").sentences[0].verdict == "unsupported"


def test_a_paraphrase_is_supported(check):
    assert check("Returns cost nothing.").sentences[0].verdict == "supported"
    result = check("We deliver standard parcels on working days from 8:00 to 18:00 [2].")
    assert result.sentences[0].verdict == "supported" and result.sentences[0].chunk == DELIVERY.chunk


def test_something_the_sources_never_say_is_unsupported_without_any_fact_in_it(check):
    assert check("Our drivers wear blue uniforms.").sentences[0].verdict == "unsupported"


def test_courtesy_is_neutral_and_the_supported_text_keeps_it(check):
    result = check(
        "You can return it within 37 days of delivery. Our depot is in Harderwijk. I hope this helps!"
    )
    assert [s.verdict for s in result.sentences] == ["supported", "unsupported", "neutral"]
    assert result.supported_text() == "You can return it within 37 days of delivery. I hope this helps!"
    assert check("I hope this helps!").all_supported is False  # nothing stated: not an answer


def test_numbers_match_in_any_spelling_the_sources_use():
    vocabulary = Vocabulary.of(
        "Returns within thirty-seven days. Open 08:00 to 18:00. The Gigabit plan costs £1,000.50 a year."
    )
    assert unknown_facts("Return within 37 days, from 8:00; it costs £1000.5 [3].", vocabulary) == []
    assert [f.text for f in unknown_facts("It costs £50 and opens at 9:00.", vocabulary)] == ["50", "9:00"]
    assert unknown_facts("Open from eight", Vocabulary.of("Open from 8:00 or 8")) == []


def test_the_customers_own_words_may_be_repeated(check):
    result = check("Order 48213 can be returned within 37 days.", question="Can I return order 48213?")
    assert result.sentences[0].unknown == ()


def test_other_languages(check):
    source = SourceText(
        7,
        "Rücksendungen sind innerhalb von 37 Tagen nach der Lieferung kostenlos möglich. "
        "Pakete werden werktags zwischen 8 und 18 Uhr zugestellt.",
    )
    verdicts = {
        answer: check(answer, sources=[source], question="Wie lange kann ich zurücksenden?").sentences[0]
        for answer in (
            "Sie können das Paket innerhalb von 37 Tagen nach der Lieferung zurücksenden.",
            "Die Rücksendung ist kostenlos.",
            "Eine Rücksendung ist innerhalb von 30 Tagen möglich.",
            "Unser Lager in Harderwijk prüft jede Sendung.",
        )
    }
    assert [v.verdict for v in verdicts.values()] == ["supported", "supported", "unsupported", "unsupported"]
    assert list(verdicts.values())[2].unknown == ("30",)


def test_sentences_and_facts():
    assert split_sentences("Call us on 0800 123 456 [1]. E.g. at 9:30. Prices start at £3.50! Done") == [
        "Call us on 0800 123 456 [1].",
        "E.g. at 9:30.",
        "Prices start at £3.50!",
        "Done",
    ]
    assert split_sentences("It is 37 days. [2]") == ["It is 37 days. [2]"]
    facts = stated_facts("Please call Zephyr Logistics about order WX-200 before April 8th [4].")
    assert [(f.kind, f.key) for f in facts] == [
        ("number", "200"),
        ("number", "8"),
        ("code", "wx-200"),
        ("name", "zephyr"),
        ("name", "logistics"),
        ("name", "april"),
    ]
    assert stated_facts("Please hold the button.") == []  # a sentence's first word is not a name
