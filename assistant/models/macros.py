"""Canned replies (macros) that agents insert in the live console and on a desk ticket, and admins
manage (Django admin, /api/macros). A body may name variables in braces, filled on the server from
the conversation or ticket at hand (assistant/copilot.py)."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# The variables a macro body may use, and what each is filled with.
VARIABLES = {
    "customer_name": "the customer's name, where they gave it",
    "ticket_reference": "the desk ticket's reference",
    "agent_name": "your name as customers see it",
    "site_name": "the website's name",
}
# {name}: letters, digits and underscores only, so "{ }" or "{{" in a body stay as written.
VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
MAX_BODY_CHARS = 5000


def variables_in(body: str) -> list[str]:
    """The variable names a body uses, in order of first appearance."""
    return list(dict.fromkeys(VARIABLE.findall(body)))


def validate_body(body: str) -> None:
    if not body.strip():
        raise ValidationError("Write the reply the macro inserts.")
    if len(body) > MAX_BODY_CHARS:
        raise ValidationError(f"A macro is limited to {MAX_BODY_CHARS} characters.")


class Macro(models.Model):
    """A canned reply: shared with every agent, or one agent's own."""

    title = models.CharField(max_length=120)
    body = models.TextField(
        validators=[validate_body],
        help_text="The text inserted for the agent to edit. Variables: "
        + ", ".join(f"{{{name}}} ({what})" for name, what in VARIABLES.items())
        + ". A variable with no value is left as written, and the agent is warned.",
    )
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Only this agent sees the macro. Empty: every agent does.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "id"]

    def __str__(self) -> str:
        return self.title

    @property
    def unknown_variables(self) -> list[str]:
        """Names in braces that no value will ever fill (a typo, most likely)."""
        return [name for name in variables_in(self.body) if name not in VARIABLES]
