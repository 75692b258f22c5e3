"""Embedding throughput: all-MiniLM-L6-v2 on 800 passages, float32 vs bfloat16, one run each.

    python benchmarks/embeddings.py [--passages 800] [--batch-size 64]

Passages are the first N of the public evaluation corpus (../shared/data/negconstraint-dev) when
present, else the demo knowledge base repeated. Both dtypes run in this process on the same
thread (inference/runtime.py explains why), after one warm-up batch. Reference (task brief, same
machine): 44 passages/s float32, 128 bfloat16.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import REPO, PeakRSS, setup_django, table


def passages(n: int) -> list[str]:
    corpus = REPO.parent / "shared" / "data" / "negconstraint-dev" / "corpus.jsonl"
    if corpus.exists():
        rows = [json.loads(line) for line in corpus.open()][:n]
        return [(row.get("title", "") + " " + row["text"]).strip() for row in rows]
    texts = [p.read_text() for p in sorted((REPO / "demo").glob("*.md"))]
    return (texts * (n // len(texts) + 1))[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    setup_django(fresh_data=False)
    import torch
    from django.conf import settings
    from sentence_transformers import SentenceTransformer

    from inference.prepare import embedding_model_path
    from inference.runtime import model_thread

    texts = passages(args.passages)
    path = str(embedding_model_path(settings.EMBEDDING_MODEL))
    rows, vectors = [], {}
    for dtype in (torch.float32, torch.bfloat16):
        model = model_thread().call(lambda d=dtype: SentenceTransformer(path, device="cpu").to(d))

        def encode(batch, m=model):
            return m.encode(
                batch,
                batch_size=args.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

        model_thread().call(encode, texts[: args.batch_size])  # warm-up
        with PeakRSS() as rss:
            started = time.perf_counter()
            vectors[dtype] = model_thread().call(encode, texts).astype(np.float32)
            seconds = time.perf_counter() - started
        rows.append(
            [str(dtype).removeprefix("torch."), len(texts), seconds, len(texts) / seconds, rss.peak_mib]
        )
    agreement = float(np.mean(np.sum(vectors[torch.float32] * vectors[torch.bfloat16], axis=1)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(table(["dtype", "passages", "seconds", "passages/s", "peak MiB"], rows))
    print(
        f"bfloat16 / float32 speed: {rows[1][3] / rows[0][3]:.2f}x; "
        f"mean cosine between the two dtypes' vectors: {agreement:.4f}"
    )
    print("Reference (task brief, same machine): 44 passages/s float32, 128 bfloat16.")


if __name__ == "__main__":
    main()
