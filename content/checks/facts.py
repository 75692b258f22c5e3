"""The fact check as a check: every claim of the article (a sentence that states something, see
answers/verification.py) supported by a passage of the sources the model was given.

It reads the item's stored fact check (ContentItem.support: answers/support.py's records with
the part of the article each sentence is in), which content/quality.py keeps up to date; it
never embeds anything itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from content.checks.reading import Report


def claims(support: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records that state something: "neutral" sentences (courtesy, no claim) are not claims."""
    return [r for r in support if isinstance(r, Mapping) and r.get("verdict") != "neutral"]


def _example(record: Mapping[str, Any], most: int = 80) -> str:
    text = str(record.get("text") or "")
    quoted = text if len(text) <= most else text[: most - 1].rstrip() + "…"
    unknown = [str(u) for u in record.get("unknown") or []]
    return f"“{quoted}”" + (f" (not in the sources: {', '.join(unknown)})" if unknown else "")


def facts(support: Sequence[Mapping[str, Any]] | None, report: Report) -> None:
    """Fails when any claim is unsupported; warns when nothing was checked (support is None)."""
    if support is None:
        report.add("facts", "warn", "The claims were not checked against the sources.", None)
        return
    stated = claims(support)
    unsupported = [r for r in stated if r.get("verdict") == "unsupported"]
    if not stated:
        report.add("facts", "pass", "The text states nothing that needs a source.", 0)
    elif unsupported:
        n = len(unsupported)
        reason = (
            f"{n} of {len(stated)} claim{'s' if len(stated) != 1 else ''} "
            f"{'is' if n == 1 else 'are'} not supported by the sources, e.g. {_example(unsupported[0])}; "
            "correct or remove them (the fact check lists each)."
        )
        report.add("facts", "fail", reason, n)
    else:
        count = len(stated)
        reason = (
            "Its one claim is supported by the sources."
            if count == 1
            else f"All {count} claims are supported by the sources."
        )
        report.add("facts", "pass", reason, 0)
