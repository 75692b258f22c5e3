"""What a visitor reads on the demo site, in both answer styles, in one run (issue 16).

    python benchmarks/verified_answers.py [--styles quote model]

Ten questions as a new visitor asks them through the chat's answer path (`stream_answer`, what
the websocket consumer runs): eight whose answer is one fact in one demo document (the cases of
benchmarks/answer_quality.py) and two the knowledge base cannot answer. Per style: the share of
answers stating their fact, of unanswerable questions answered "not sure" with a person offered,
of answers whose every shown sentence was verified, time to the first visible text (p50, max:
the first `token` event, from the question) and words per answer (median). Each answer is
printed, so the figures can be read against what a visitor would see.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import REPO, setup_django
from answer_quality import CASES

UNANSWERABLE = [
    "Do you deliver pizza to my street?",
    "What is the name of your CEO's dog?",
]


async def ask(question: str) -> dict:
    from assistant.chat.actions import stream_answer
    from assistant.chat.visitors import issue_token
    from assistant.models import Message

    visitor, _ = issue_token()
    started = time.perf_counter()
    first = None
    parts, done = [], {}
    async for event in stream_answer(question, conversation_id=None, visitor=visitor):
        if event.kind == "token":
            first = first if first is not None else time.perf_counter() - started
            parts.append(event.data["text"])
        elif event.kind == "done":
            done = event.data
    message = await Message.objects.aget(pk=int(done["message"]))
    return {
        "text": "".join(parts).strip(),
        "first": first,
        "handoff": done["handoff"],
        "verified": message.verified,
    }


def run(style: str) -> dict:
    from asgiref.sync import async_to_sync
    from django.test import override_settings

    rows = []
    with override_settings(CHAT_ANSWER_STYLE=style):
        for question, _document, facts in CASES:
            row = async_to_sync(ask)(question)
            rows.append({**row, "question": question, "fact": any(f in row["text"] for f in facts)})
        for question in UNANSWERABLE:
            row = async_to_sync(ask)(question)
            rows.append({**row, "question": question, "fact": None})
    for row in rows:
        mark = {True: "FACT", False: "miss", None: "n/a "}[row["fact"]]
        print(f"[{style}] {mark} handoff={row['handoff']!s:5} {row['question']}\n    {row['text'][:300]}")
    answerable = [r for r in rows if r["fact"] is not None]
    unanswerable = [r for r in rows if r["fact"] is None]
    given = [r for r in rows if not r["handoff"]]
    firsts = [r["first"] for r in rows if r["first"] is not None]
    return {
        "style": style,
        "fact": f"{sum(r['fact'] for r in answerable)}/{len(answerable)}",
        "declined_unanswerable": f"{sum(r['handoff'] for r in unanswerable)}/{len(unanswerable)}",
        "declined_answerable": f"{sum(r['handoff'] for r in answerable)}/{len(answerable)}",
        "verified": f"{sum(r['verified'] for r in given)}/{len(given)}",
        "first_text_p50_s": round(statistics.median(firsts), 3) if firsts else None,
        "first_text_max_s": round(max(firsts), 3) if firsts else None,
        "median_words": statistics.median(len(r["text"].split()) for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--styles", nargs="+", default=["quote", "model"], choices=["quote", "model"])
    args = parser.parse_args()
    setup_django()
    from retrieval.actions.ingest import do_ingest_path

    do_ingest_path(REPO / "demo")
    # Load the models before timing (a server has them loaded before its first visitor).
    from inference.services import get_embedder, get_text_generator

    get_embedder().embed(["warm up"])
    get_text_generator()
    results = [run(style) for style in args.styles]
    for result in results:
        print(result)


if __name__ == "__main__":
    main()
