"""`python manage.py models list|activate ID|rollback`: the model registry from the command line.

    models list [--kind chat] [--json]       every version (`--json`: one JSON array)
    models activate ID_OR_KEY [--reason ...] make a version active; the active one is retired
    models rollback [--kind chat] [--reason ...]
                                             re-activate the version active before the current one

A running server picks up an activation within a few seconds (inference/services.py).
Refusals (unknown version, missing files, nothing to roll back) exit with status 1.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.actions import RegistryError, do_activate_model_version, do_rollback, find_version
from inference.models import ModelVersion


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no LOGNAME (some containers)
        return "cli:unknown"


def version_as_dict(version: ModelVersion) -> dict[str, Any]:
    return {
        "id": version.pk,
        "key": version.key,
        "kind": version.kind,
        "name": version.name,
        "base": version.base,
        "adapter": version.adapter,
        "dtype": version.dtype,
        "source": version.source,
        "path": version.path,
        "sha256": version.sha256,
        "metrics": version.metrics,
        "status": version.status,
        "files_present": version.files_present,
        "created_at": version.created_at.isoformat(),
        "activated_at": version.activated_at.isoformat() if version.activated_at else None,
    }


class Command(BaseCommand):
    help = "List, activate and roll back model versions (the model registry)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{list,activate,rollback}")
        kinds = ModelVersion.Kind.values

        listing = sub.add_parser("list", help="Show every registered version.")
        listing.add_argument("--kind", choices=kinds, help="Only versions of this kind.")
        listing.add_argument("--json", action="store_true", help="Print one JSON array.")

        activate = sub.add_parser("activate", help="Make a version the active one of its kind.")
        activate.add_argument(
            "id_or_key", metavar="ID_OR_KEY", help="A version id or key from `models list`."
        )
        activate.add_argument("--reason", default="", help="Recorded in the audit trail.")

        rollback = sub.add_parser("rollback", help="Re-activate the version active before the current one.")
        rollback.add_argument("--kind", choices=kinds, default=ModelVersion.Kind.CHAT)
        rollback.add_argument("--reason", default="", help="Recorded in the audit trail.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "list":
                self._list(options["kind"], as_json=options["json"])
            elif options["action"] == "activate":
                version = do_activate_model_version(
                    find_version(options["id_or_key"]), actor=cli_actor(), reason=options["reason"]
                )
                self.stdout.write(self.style.SUCCESS(f"activated {version.key} (id {version.pk})"))
            else:
                version = do_rollback(options["kind"], actor=cli_actor(), reason=options["reason"])
                self.stdout.write(
                    self.style.SUCCESS(f"rolled back: {version.key} (id {version.pk}) is active")
                )
        except RegistryError as exc:
            raise CommandError(f"{exc.message} [{exc.code}]") from exc

    def _list(self, kind: str | None, *, as_json: bool) -> None:
        versions = ModelVersion.objects.all()
        if kind:
            versions = versions.filter(kind=kind)
        rows = [version_as_dict(v) for v in versions]
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("no model versions registered (run `python manage.py prepare_models`)")
            return
        self.stdout.write(f"{'ID':>4}  {'KIND':<9}  {'STATUS':<9}  {'DTYPE':<8}  {'ACTIVATED':<16}  KEY")
        for row in rows:
            activated = (row["activated_at"] or "-")[:16].replace("T", " ")
            missing = "  (files missing)" if not row["files_present"] else ""
            self.stdout.write(
                f"{row['id']:>4}  {row['kind']:<9}  {row['status']:<9}  {row['dtype'] or '-':<8}  "
                f"{activated:<16}  {row['key']}{missing}"
            )
