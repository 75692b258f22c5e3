"""Email triage: which method sorts support mail best, measured on a held-out labelled set.

    python benchmarks/triage_bench.py [--no-lm]

Data: benchmarks/data/desk_triage.jsonl, 50 support mails written for this benchmark (38 English,
12 in seven other languages) with a category, a priority and a language each; none of them is
among the labelled examples the desk ships (assistant/desk/labels.json), which are the methods'
only training data. Methods, in one process on the same embeddings:
- top-2: the desk's method (assistant/desk/triage.py): each label scored by the mean similarity
  of its two examples nearest to the mail, confidence a softmax over the scores;
- centroid: the label whose examples' mean embedding is nearest;
- 1-nn: the label of the single nearest example;
- lm: the chat model (SmolLM2-135M-Instruct) asked to answer with one label (greedy, 6 tokens).
Printed: accuracy and macro-F1 for category and priority, on all mails and on the English ones;
the desk method's accuracy on the mails it is confident about (>= 0.5) and how many those are;
language accuracy of py3langid; milliseconds per mail.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import REPO, setup_django, table

DATA = REPO / "benchmarks" / "data" / "desk_triage.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-lm", action="store_true", help="skip asking the chat model")
    args = parser.parse_args()
    setup_django()
    from asgiref.sync import async_to_sync
    from sklearn.metrics import accuracy_score, f1_score

    from assistant.desk.triage import _centroids, classify, detect_language
    from inference.base import GenerationParams
    from inference.services import get_embedder, get_text_generator

    rows = [json.loads(line) for line in DATA.open()]
    texts = [row["text"] for row in rows]
    english = np.array([row["language"] == "en" for row in rows])
    embedder = get_embedder()
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    embed_ms = (time.perf_counter() - started) * 1000 / len(rows)

    results: list[list] = []
    calibration = []
    for kind in ("category", "priority"):
        truth = np.array([row[kind] for row in rows])
        centroids = _centroids(kind)
        predicted, timings = {}, {}
        for method, name in (("top", "top-2"), ("centroid", "centroid"), ("nearest", "1-nn")):
            started = time.perf_counter()
            decided = [classify(kind, vector, method) for vector in vectors]
            timings[name] = embed_ms + (time.perf_counter() - started) * 1000 / len(rows)
            predicted[name] = np.array([d.label for d in decided])
            if method == "top":
                decisions = decided
        if not args.no_lm:
            predicted["lm"], timings["lm"] = _ask_model(
                get_text_generator(), async_to_sync, GenerationParams, kind, centroids.names, texts
            )
        for method, labels in predicted.items():
            results.append(
                [
                    kind,
                    method,
                    f"{accuracy_score(truth, labels):.2f}",
                    f"{f1_score(truth, labels, average='macro', zero_division=0):.2f}",
                    f"{accuracy_score(truth[english], labels[english]):.2f}",
                    f"{accuracy_score(truth[~english], labels[~english]):.2f}",
                    f"{timings[method]:.1f}",
                ]
            )
        confident = np.array([d.confidence >= 0.5 for d in decisions])
        calibration.append(
            [
                kind,
                f"{confident.sum()}/{len(rows)}",
                f"{accuracy_score(truth[confident], predicted['top-2'][confident]):.2f}",
                f"{accuracy_score(truth[~confident], predicted['top-2'][~confident]):.2f}"
                if (~confident).any()
                else "-",
            ]
        )
    print(
        table(
            ["task", "method", "accuracy", "macro-F1", "acc (en)", "acc (other)", "ms/mail"],
            results,
        )
    )
    print()
    print(table(["task", "confident (>=0.5)", "acc confident", "acc unsure"], calibration))
    started = time.perf_counter()
    languages = [detect_language(text) for text in texts]
    language_ms = (time.perf_counter() - started) * 1000 / len(rows)
    correct = sum(d.label == row["language"] for d, row in zip(languages, rows, strict=True))
    print(
        f"\nlanguage (py3langid): accuracy {correct / len(rows):.2f} on {len(rows)} mails,",
        f"{language_ms:.1f} ms/mail",
    )
    wrong = [
        (row["language"], d.label, d.confidence)
        for d, row in zip(languages, rows, strict=True)
        if d.label != row["language"]
    ]
    if wrong:
        print("  wrong (truth, said, confidence):", wrong)


def _ask_model(generator, async_to_sync, params_cls, kind, names, texts):
    labels = []
    started = time.perf_counter()
    for text in texts:
        messages = [
            {
                "role": "system",
                "content": f"Classify the customer's email by its {kind}. "
                f"Answer with exactly one word from this list: {', '.join(names)}.",
            },
            {"role": "user", "content": text},
        ]
        answer, _ = async_to_sync(generator.complete)(messages, params_cls(max_tokens=6, temperature=0.0))
        lowered = answer.lower()
        found = [name for name in names if name in lowered]
        labels.append(found[0] if found else "none")
    return np.array(labels), (time.perf_counter() - started) * 1000 / len(texts)


if __name__ == "__main__":
    main()
