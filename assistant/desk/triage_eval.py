"""How well the desk's triage sorts a labelled set of mails, overall and for each group of senders.

`evaluate(rows)` runs the desk's own decision (assistant/desk/triage.py: the mail embedded,
each label scored from its nearest labelled examples, softmax confidences) on each row's text
and scores it against the row's `category` and `priority` with scikit-learn: accuracy,
macro-F1 and ROC-AUC (one-vs-rest from the per-label probabilities, macro-averaged over the
labels that have both positive and negative mails in the group; null where none has). The same
figures per `language` and per `segment` (consumer / business) show whether some senders are
served worse: for each grouping, the largest accuracy gap between groups of at least
`min_group` mails, flagged when it reaches `gap_threshold`.

Data: `manage.py eval_triage` reads benchmarks/data/desk_triage_heldout.jsonl by default (60 mails,
30 consumer / 30 business, 40 en / 10 de / 10 fr), written after the triage method was chosen and
never used to tune it. benchmarks/data/desk_triage.jsonl (50 mails) was used to choose the method
and its temperature (benchmarks/triage_bench.py), so figures on it are optimistic; the command
adds a `caveat` to its output when given that file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from assistant.desk.triage import classify
from core.errors import DomainError
from inference.services import get_embedder

KINDS = ("category", "priority")
GROUPINGS = ("language", "segment")


class TriageEvalError(DomainError):
    pass


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file: text, category, priority, and optionally language and segment."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TriageEvalError("unreadable_data", f"Cannot read {path}: {exc.strerror}.") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise TriageEvalError("bad_row", f"Line {number} is not JSON.") from exc
        if not isinstance(row, dict) or not all(isinstance(row.get(key), str) for key in ("text", *KINDS)):
            raise TriageEvalError("bad_row", f"Line {number} needs text, category and priority strings.")
        rows.append(row)
    if not rows:
        raise TriageEvalError("no_rows", f"{path} has no rows.")
    return rows


def scores(truth: list[str], predicted: list[str], probabilities: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, macro-F1 and one-vs-rest ROC-AUC of one group (probabilities: (n, labels))."""
    aucs = []
    for j, label in enumerate(labels):
        positive = np.array([t == label for t in truth])
        if positive.any() and not positive.all():
            aucs.append(roc_auc_score(positive, probabilities[:, j]))
    present = sorted(set(truth) | set(predicted))
    return {
        "n": len(truth),
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(
            float(f1_score(truth, predicted, labels=present, average="macro", zero_division=0)), 4
        ),
        "roc_auc": round(float(np.mean(aucs)), 4) if aucs else None,
        "roc_auc_labels": len(aucs),
    }


def largest_gap(groups: dict[str, dict], min_group: int, threshold: float) -> dict[str, Any]:
    """The widest accuracy difference between two groups with at least `min_group` mails."""
    sized = {name: g for name, g in groups.items() if g["n"] >= min_group}
    compared = sorted(sized)
    if len(sized) < 2:
        return {"metric": "accuracy", "compared": compared, "gap": None, "between": None, "flagged": False}
    best = max(sized, key=lambda name: sized[name]["accuracy"])
    worst = min(sized, key=lambda name: sized[name]["accuracy"])
    gap = round(sized[best]["accuracy"] - sized[worst]["accuracy"], 4)
    return {
        "metric": "accuracy",
        "compared": compared,
        "gap": gap,
        "between": [best, worst],
        "flagged": gap >= threshold,
    }


def evaluate(rows: list[dict[str, Any]], *, min_group: int = 3, gap_threshold: float = 0.1) -> dict[str, Any]:
    started = time.perf_counter()
    vectors = get_embedder().embed([row["text"] for row in rows])  # (n, dim)
    result: dict[str, Any] = {"mails": len(rows)}
    for kind in KINDS:
        decisions = [classify(kind, vector) for vector in vectors]
        if any(d is None for d in decisions):
            raise TriageEvalError(
                "no_labels", f"No active {kind} labels with examples: add them in the admin."
            )
        labels = list(decisions[0].probabilities)
        truth = [row[kind] for row in rows]
        predicted = [d.label for d in decisions]
        probabilities = np.array([[d.probabilities[label] for label in labels] for d in decisions])
        unknown = sorted(set(truth) - set(labels))
        section: dict[str, Any] = {
            "labels": labels,
            "unknown_labels_in_data": unknown,
            "overall": scores(truth, predicted, probabilities, labels),
        }
        for grouping in GROUPINGS:
            keys = [str(row.get(grouping) or "unknown") for row in rows]
            groups = {}
            for name in sorted(set(keys)):
                idx = [i for i, key in enumerate(keys) if key == name]
                groups[name] = scores(
                    [truth[i] for i in idx], [predicted[i] for i in idx], probabilities[idx], labels
                )
            section[f"by_{grouping}"] = groups
            section[f"gap_by_{grouping}"] = largest_gap(groups, min_group, gap_threshold)
        result[kind] = section
    result["flagged"] = [
        f"{kind} by {grouping}"
        for kind in KINDS
        for grouping in GROUPINGS
        if result[kind][f"gap_by_{grouping}"]["flagged"]
    ]
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result
