"""Answer quality on SQuAD-2.0-format data through the real answer path; prints one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from assistant.chat.evaluation import AnswerEvalError, evaluate, load_squad


class Command(BaseCommand):
    help = (
        "Ingest each paragraph of a SQuAD-2.0-format file as one document into a throwaway "
        "collection, ask each question through the chat answer path as a new visitor, and print "
        "fact, cite, decline, false_decline, unsupported, baseline_fact (the top hit's sentence "
        "sharing most words with the question), median_words, question counts and seconds per "
        "answer as one JSON object (see assistant/chat/evaluation.py). The collection, its documents, "
        "index files and conversations are removed afterwards."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--squad", type=Path, required=True, help="SQuAD-2.0-format JSON file.")
        parser.add_argument(
            "--limit",
            type=int,
            default=None,
            help="Ask only the first N answerable and the first N unanswerable questions, in file "
            "order (deterministic). All paragraphs are still ingested.",
        )
        parser.add_argument(
            "--details", type=Path, default=None, help="Also write one JSON line per question here."
        )

    def handle(self, *args, squad: Path, limit: int | None, details: Path | None, **options) -> None:
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        try:
            paragraphs, questions = load_squad(squad, limit)
            result = evaluate(paragraphs, questions, details=details)
        except AnswerEvalError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(json.dumps({"data": str(squad), "limit": limit, **result}, indent=2))
