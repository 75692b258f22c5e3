"""`python manage.py prepare_models`: make the default models ready offline (idempotent)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from inference.actions import do_register_model_version
from inference.prepare import (
    BUILTIN_SPEC,
    PreparedModel,
    builtin_model_dir,
    prepare_chat_model,
    prepare_embedding_model,
    prepare_image_model,
)


class Command(BaseCommand):
    help = (
        "Fetch and convert the default chat model, locate the embedding model and build the "
        "built-in image pipeline (offline, idempotent)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--skip-register",
            action="store_true",
            help="Prepare files only; do not record versions in the database.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        chat_dir = Path(settings.CHAT_MODEL)
        prepared: list[PreparedModel] = []
        if chat_dir.is_relative_to(settings.MODELS_DIR) or not chat_dir.exists():
            try:
                chat, built = prepare_chat_model(chat_dir, download_dir=settings.MODELS_DIR / "downloads")
            except Exception as exc:
                raise CommandError(f"Could not prepare the chat model: {exc}") from exc
            self.stdout.write(f"chat model {chat.key}: {'converted' if built else 'ready'} at {chat.path}")
            prepared.append(chat)
        else:
            self.stdout.write(f"chat model: using CHAT_MODEL={chat_dir} as configured")
        try:
            embedding = prepare_embedding_model(settings.EMBEDDING_MODEL)
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"embedding model {embedding.key}: ready at {embedding.path}")
        prepared.append(embedding)
        if settings.IMAGE_MODEL == BUILTIN_SPEC:
            try:
                image, built = prepare_image_model(builtin_model_dir())
            except Exception as exc:
                raise CommandError(f"Could not build the built-in image pipeline: {exc}") from exc
            self.stdout.write(
                f"image model {image.key}: {'built' if built else 'ready'} at {image.path} "
                "(random weights: its pictures are not meaningful; set IMAGE_MODEL for a real model)"
            )
            prepared.append(image)
        else:
            self.stdout.write(f"image model: using IMAGE_MODEL={settings.IMAGE_MODEL} as configured")

        if not options["skip_register"]:
            try:
                for model in prepared:
                    do_register_model_version(key=model.key, kind=model.kind, **model.as_registry_fields())
            except DatabaseError as exc:
                raise CommandError(
                    f"Models are ready but could not be registered "
                    f"(run `python manage.py migrate` first): {exc}"
                ) from exc
        self.stdout.write(self.style.SUCCESS(f"models ready in {time.perf_counter() - started:.1f}s"))
