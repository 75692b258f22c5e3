"""`manage.py eval_triage`: the desk's real triage (seeded labels, real embedder) scored on a
labelled file, overall and per group."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

pytestmark = pytest.mark.django_db

ROWS = [
    {
        "text": "I was charged twice this month, please refund me.",
        "category": "billing",
        "priority": "high",
        "language": "en",
        "segment": "consumer",
    },
    {
        "text": "Our office internet has been down since this morning, ten staff cannot work.",
        "category": "technical",
        "priority": "urgent",
        "language": "en",
        "segment": "business",
    },
    {
        "text": "Can I pay yearly instead of monthly?",
        "category": "billing",
        "priority": "low",
        "language": "en",
        "segment": "consumer",
    },
    {
        "text": "Please send the invoices for our company for the last quarter.",
        "category": "billing",
        "priority": "normal",
        "language": "en",
        "segment": "business",
    },
    {
        "text": "Seit heute Morgen habe ich kein Internet mehr, der Router blinkt rot.",
        "category": "technical",
        "priority": "high",
        "language": "de",
        "segment": "consumer",
    },
    {
        "text": "Bonjour, je souhaite résilier mon abonnement à la fin du mois.",
        "category": "account",
        "priority": "normal",
        "language": "fr",
        "segment": "consumer",
    },
]
METRICS = {"n", "accuracy", "macro_f1", "roc_auc", "roc_auc_labels"}


def run(*args: str) -> dict:
    out = StringIO()
    call_command("eval_triage", *args, stdout=out)
    return json.loads(out.getvalue())


def test_it_prints_scores_overall_and_per_language_and_segment(tmp_path, embedder):
    data = tmp_path / "mails.jsonl"
    data.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in ROWS) + "\n", encoding="utf-8")
    result = run("--data", str(data), "--min-group", "2")
    # The caveat is about the tuning set (desk_triage.jsonl), the note about the held-out default.
    assert result["mails"] == 6 and "caveat" not in result and "data_note" not in result
    for kind in ("category", "priority"):
        section = result[kind]
        assert set(section["overall"]) == METRICS and section["overall"]["n"] == 6
        assert 0 <= section["overall"]["accuracy"] <= 1 and 0 <= section["overall"]["macro_f1"] <= 1
        assert set(section["by_language"]) == {"en", "de", "fr"}
        assert [section["by_language"][lang]["n"] for lang in ("en", "de", "fr")] == [4, 1, 1]
        assert {name: g["n"] for name, g in section["by_segment"].items()} == {"business": 2, "consumer": 4}
        # Only groups of at least --min-group mails are compared: de and fr have one each.
        assert section["gap_by_language"]["compared"] == ["en"] and section["gap_by_language"]["gap"] is None
        gap = section["gap_by_segment"]
        assert gap["compared"] == ["business", "consumer"] and gap["gap"] >= 0
        assert gap["flagged"] == (gap["gap"] >= 0.1)
    assert result["category"]["overall"]["roc_auc"] is not None  # several categories present


def test_the_default_data_is_the_held_out_set_and_loads():
    from assistant.desk.triage_eval import load_rows
    from assistant.management.commands.eval_triage import DEFAULT_DATA, TUNING_DATA

    assert DEFAULT_DATA.name == "desk_triage_heldout.jsonl" and DEFAULT_DATA != TUNING_DATA
    rows = load_rows(DEFAULT_DATA)
    assert len(rows) == 60
    assert sorted(rows[0]) == ["category", "language", "priority", "segment", "text"]


def test_a_bad_file_is_a_command_error_not_a_traceback(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "no labels"}\n')
    with pytest.raises(CommandError, match="bad_row"):
        run("--data", str(data))
    with pytest.raises(CommandError, match="unreadable_data"):
        run("--data", str(tmp_path / "missing.jsonl"))


def test_a_triaged_tickets_page_explains_the_decision(embedder, client, agent):
    from assistant.desk.triage import triage
    from assistant.models import MailMessage, Ticket

    ticket = Ticket.objects.create(
        subject="Charged twice", customer_email="ana@example.com", status="needs_review"
    )
    MailMessage.objects.create(
        ticket=ticket,
        direction=MailMessage.Direction.IN,
        message_id="<charged@example.com>",
        from_email="ana@example.com",
        subject="Charged twice",
        text="You took the monthly payment twice, please refund one.",
    )
    triage(ticket)
    category = ticket.triage["category"]
    assert set(category["probabilities"]) == set(category["scores"])
    assert sum(category["probabilities"].values()) == pytest.approx(1, abs=0.01)

    client.force_login(agent)
    page = client.get(f"/console/desk/{ticket.pk}/").content.decode()
    assert "Probability of each label" in page and "Similarity to each label" in page
    nearest = category["nearest"][0]
    assert "the nearest labelled examples" in page and f"similarity {nearest['score']:.3f}" in page
