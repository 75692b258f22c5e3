"""Grounded-answer check on the demo knowledge base: does the answer state the fact its source holds?

    python benchmarks/answer_quality.py [--max-new-tokens 90]

Eight questions whose answer is one fact in one demo document. For each: retrieval hit@3 of that
document, and whether the generated answer (Parley's prompt and generation settings) contains
the fact. A coarse check for comparing prompts and models, not a benchmark of the model.
"""

from __future__ import annotations

import argparse
import asyncio

from _common import REPO, setup_django

CASES = [
    ("How do I factory reset my router?", "router-reset.md", ["15 seconds"]),
    ("How much does the Gigabit plan cost?", "plans-and-speeds.md", ["£50"]),
    ("When is the chat open?", "contact-and-hours.md", ["8:00"]),
    ("How long does a refund take?", "refunds.md", ["working days"]),
    ("How much notice do I need to give to move house?", "moving-house.md", ["10 working days"]),
    ("What is the late payment fee?", "billing-and-invoices.md", ["£7.50"]),
    ("How much compensation do I get for an outage?", "outages-and-status.md", ["£8"]),
    ("What is the early termination fee?", "cancellation.md", ["£10"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-new-tokens", type=int, default=90)
    args = parser.parse_args()
    setup_django()
    from django.conf import settings

    from answers.prompts import build_answer_messages, number_sources
    from inference.base import GenerationParams
    from inference.services import get_text_generator
    from retrieval.actions.ingest import do_ingest_path
    from retrieval.models import Document
    from retrieval.search import search

    do_ingest_path(REPO / "demo")
    generator = get_text_generator()
    params = GenerationParams(
        max_tokens=args.max_new_tokens, repetition_penalty=settings.CHAT_REPETITION_PENALTY
    )
    prepared = []
    for question, doc_name, facts in CASES:
        hits = search(question, k=settings.CHAT_RETRIEVAL_K)
        wanted = Document.objects.get(source__endswith=doc_name).pk
        prepared.append(
            (
                question,
                facts,
                any(h.document_id == wanted for h in hits),
                build_answer_messages(question, number_sources(hits), []),
            )
        )

    async def answer_all():
        return [await generator.complete(messages, params) for *_, messages in prepared]

    answers = asyncio.run(answer_all())
    found = retrieved = 0
    for (question, facts, hit, _), (text, _) in zip(prepared, answers, strict=True):
        ok = any(fact in text for fact in facts)
        found, retrieved = found + ok, retrieved + hit
        print(
            f"{'FACT' if ok else 'miss'} {'hit ' if hit else 'MISS'} {question}\n    "
            + " ".join(text.split())[:200]
        )
    print(
        f"\nretrieval hit@{settings.CHAT_RETRIEVAL_K}: {retrieved}/{len(CASES)}; "
        f"answers stating the fact: {found}/{len(CASES)} (model {generator.model_version})"
    )


if __name__ == "__main__":
    main()
