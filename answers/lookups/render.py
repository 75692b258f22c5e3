"""Reply templates: the sentence the customer reads, made from the system's JSON.

Django's template language, on an engine of its own: no loaders (no {% include %} or
{% extends %} of files), no tag libraries, autoescape off (the reply is plain text, and every
page and the widget show it as text), and only the tags in ALLOWED_TAGS ({% debug %} would
print the context). The system's JSON is the context's data only (`{{ result.status }}`,
`{{ result.items.0.name }}`; the customer's own parameter values by name, `{{ order }}`): a value
that looks like a template ("{{ secret }}") is printed as it is, never rendered again. A key the
system did not send renders empty, and the reply then says the system did not say.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.template import Context, Engine, TemplateSyntaxError

MAX_TEMPLATE_CHARS = 4000
MAX_REPLY_CHARS = 2000
ALLOWED_TAGS = frozenset(
    "if elif else endif for empty endfor with endwith firstof comment endcomment spaceless "
    "endspaceless".split()
)
MISSING_NOTE = "(Our system did not say everything this answer needs.)"
_MISSING = "\x00missing\x00"
_TAG = re.compile(r"\{%-?\s*(\w+)")

_engine = Engine(
    dirs=[], app_dirs=False, loaders=[], libraries={}, autoescape=False, string_if_invalid=_MISSING
)


class TemplateError(ValueError):
    """A template that cannot be used, with a message for the admin."""


def validate_template(source: str) -> None:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"A template may be at most {MAX_TEMPLATE_CHARS} characters long.")
    for tag in _TAG.findall(source):
        if tag not in ALLOWED_TAGS:
            raise TemplateError(
                f"The tag {{% {tag} %}} is not allowed here; use {', '.join(sorted(ALLOWED_TAGS))}."
            )
    try:
        _engine.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"The template is not valid: {exc}") from exc


def render(source: str, result: Any, values: Mapping[str, str]) -> tuple[str, bool]:
    """The reply text and whether a key it names was missing from `result`."""
    validate_template(source)
    context = {**values, "result": result}
    text = str(_engine.from_string(source).render(Context(context, autoescape=False)))
    missing = _MISSING in text
    lines = (" ".join(line.split()) for line in text.replace(_MISSING, "").splitlines())
    text = "\n".join(line for line in lines if line)[:MAX_REPLY_CHARS]
    if missing:
        text = f"{text} {MISSING_NOTE}".strip()
    return text, missing
