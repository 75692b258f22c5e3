"""Content studio: how long a whole article and one image take on this machine.

    python benchmarks/content_bench.py [--length short|medium|long] [--preset social|square|landscape]

In one process on a fresh data directory with the demo knowledge base: the full generation of
one brief with the default settings (outline, introduction, sections, meta description, FAQ,
checks), then one image at the preset with the configured IMAGE_MODEL (offline: the built-in
small pipeline, whose pictures are not meaningful; its speed is not the speed of a real model).
"""

from __future__ import annotations

import argparse
import time

from _common import REPO, setup_django, table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", default="medium", choices=["short", "medium", "long"])
    parser.add_argument("--preset", default="social")
    args = parser.parse_args()
    setup_django()
    from content.generation import generate
    from content.images import queue_images, render
    from content.models import Brief, ContentItem
    from inference.services import get_embedder, get_image_generator, get_text_generator
    from retrieval.actions.ingest import do_ingest_path

    do_ingest_path(REPO / "demo")
    get_text_generator(), get_embedder()  # loaded before the clock starts, as on a running server
    brief = Brief.objects.create(
        topic="Fixing slow Wi-Fi at home",
        keyphrase="slow wifi",
        audience="home customers",
        length=args.length,
    )
    item = ContentItem.objects.create(brief=brief)
    started = time.perf_counter()
    generate(item.pk)
    article_s = time.perf_counter() - started
    item.refresh_from_db()
    words = sum(len(s["text"].split()) for s in item.sections) + len(item.intro.split())
    generator = get_image_generator()
    item.image_prompts = [{**item.image_prompts[0], "size": args.preset}]
    item.save()
    image = queue_images(item, 0, candidates=1)[0]
    started = time.perf_counter()
    render(image.pk)
    image_s = time.perf_counter() - started
    image.refresh_from_db()
    print(
        table(
            ["what", "seconds", "detail"],
            [
                [
                    "article",
                    f"{article_s:.1f}",
                    f"{args.length}: {len(item.sections)} sections, {words} words, {item.generation}",
                ],
                [
                    "image",
                    f"{image_s:.1f}",
                    f"{image.width}x{image.height}, {image.steps} steps, {generator.model_version}, "
                    f"{image.status}",
                ],
            ],
        )
    )


if __name__ == "__main__":
    main()
