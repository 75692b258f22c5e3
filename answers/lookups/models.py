"""The tables of actions (answers/lookups/): `Action`, a lookup an admin defines, and
`ActionCall`, the record of every attempt to use one. Defined here, inside the package, and
re-exported by answers/models.py: the package's modules (validation of parameters and templates,
the SSRF rules, the secret's encryption) are what the models validate with, so the models
live on the package's side of the import graph (no cycle between answers.models and
answers.lookups)."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from answers.lookups import vault
from answers.lookups.params import Parameter, ParameterError, parse_parameters, placeholders
from answers.lookups.render import TemplateError, validate_template


def stdio_commands() -> set[str]:
    """The MCP server commands an action may start (setting ACTIONS_MCP_COMMANDS)."""
    return {" ".join(str(command).split()) for command in settings.ACTIONS_MCP_COMMANDS}


def _validate_parameters(value: Any) -> None:
    try:
        parse_parameters(value)
    except ParameterError as exc:
        raise ValidationError(str(exc)) from exc


def _validate_headers(value: Any) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationError('Headers must be an object of names and text values, like {"X-Shop": "eu"}.')
    for name, header in value.items():
        if not _HEADER_NAME.fullmatch(name) or "\r" in header or "\n" in header or len(header) > 1000:
            raise ValidationError(f"The header {name[:40]!r} is not a valid header name and value.")


def _validate_template(value: str) -> None:
    try:
        validate_template(value)
    except TemplateError as exc:
        raise ValidationError(str(exc)) from exc


_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")


class Action(models.Model):
    """A lookup in one of the company's systems that the chat and the desk may make for a
    customer (answers/lookups/): picked when a question is close to one of its example
    questions, called with parameters the customer typed, answered through its reply template.
    `version` goes up on every save, and every call records the version it ran."""

    class Kind(models.TextChoices):
        HTTP = "http", "HTTP endpoint"
        MCP = "mcp", "MCP server tool"

    class Method(models.TextChoices):
        GET = "GET"
        POST = "POST"

    class Transport(models.TextChoices):
        STDIO = "stdio", "stdio (a command)"
        HTTP = "http", "streamable HTTP (a URL)"

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    collection = models.SlugField(
        max_length=64, blank=True, help_text="Only for this knowledge base's chat; empty: everywhere."
    )
    examples = models.TextField(help_text="Questions it answers, one per line.")
    parameters = models.JSONField(
        default=list,
        blank=True,
        validators=[_validate_parameters],
        help_text='A list like [{"name": "order", "label": "your order number", "pattern": '
        '"ZX\\\\d{4}", "example": "ZX1234"}]: what to ask the customer for, and the pattern a value '
        "must match in full.",
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.HTTP)
    url = models.CharField(
        max_length=500,
        blank=True,
        help_text="HTTP: the endpoint, https://..., with {name} where a parameter goes "
        "(https://orders.example.com/api/orders/{order}).",
    )
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.GET)
    headers = models.JSONField(
        default=dict,
        blank=True,
        validators=[_validate_headers],
        help_text='Extra headers, like {"Authorization": "Bearer {secret}", "X-Customer": "{visitor}"}: '
        "{secret} is the secret below, {visitor} the customer's verified identity.",
    )
    secret_encrypted = models.TextField(blank=True, editable=False)
    timeout_seconds = models.FloatField(
        default=5.0, validators=[MinValueValidator(0.5), MaxValueValidator(30.0)]
    )
    reply_template = models.TextField(
        validators=[_validate_template],
        help_text="What the customer reads, from the system's JSON: "
        '"Your order {{ order }} is {{ result.status }}."',
    )
    not_found_template = models.TextField(
        blank=True,
        validators=[_validate_template],
        default="I could not find anything for that. Please check it, or ask for a person.",
        help_text="What the customer reads when the system has nothing for them (404 or 403).",
    )
    mcp_transport = models.CharField(max_length=8, choices=Transport.choices, blank=True)
    mcp_target = models.CharField(
        max_length=500, blank=True, help_text="MCP: the command to start (stdio) or the server's URL."
    )
    mcp_tool = models.CharField(max_length=200, blank=True, help_text="MCP: the tool to call.")
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            self.version = (
                Action.objects.filter(pk=self.pk).values_list("version", flat=True).first() or 0
            ) + 1
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "version", "updated_at"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from answers.lookups.http import endpoint_refusal  # httpx and retrieval: loaded when used

        try:
            names = {p.name for p in parse_parameters(self.parameters)}
        except ParameterError:
            return  # the field's own validator says why
        if self.kind == self.Kind.HTTP:
            if not self.url:
                raise ValidationError({"url": "An HTTP action needs its endpoint."})
            host_part = self.url.split("//", 1)[-1].split("/", 1)[0]
            if "{" in host_part:
                raise ValidationError({"url": "Parameters may go in the path or query, not the host."})
            unknown = placeholders(self.url) - names
            if unknown:
                raise ValidationError({"url": f"No parameter is named {', '.join(sorted(unknown))}."})
            refusal = endpoint_refusal(self.url.replace("{", "").replace("}", ""))
            if refusal is not None:
                raise ValidationError({"url": refusal})
        else:
            if not (self.mcp_transport and self.mcp_target and self.mcp_tool):
                raise ValidationError(
                    "An MCP action needs its server (transport and command or URL) and tool."
                )
            if self.mcp_transport == self.Transport.HTTP:
                refusal = endpoint_refusal(self.mcp_target)
                if refusal is not None:
                    raise ValidationError({"mcp_target": refusal})
            elif " ".join(self.mcp_target.split()) not in stdio_commands():
                # A command typed into a web form would run on the server: only the ones whoever
                # runs Parley listed may.
                raise ValidationError(
                    {"mcp_target": "Only the MCP commands listed in ACTIONS_MCP_COMMANDS may be started."}
                )

    def example_list(self) -> list[str]:
        return [line.strip() for line in self.examples.splitlines() if line.strip()]

    def parameter_list(self) -> list[Parameter]:
        return parse_parameters(self.parameters)

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = vault.encrypt(secret)

    def get_secret(self) -> str:
        """The secret in clear, for the call only (SecretUnreadable when the key changed)."""
        return vault.decrypt(self.secret_encrypted)

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)


class ActionCall(models.Model):
    """One attempt to use an action, whatever came of it: what a customer looked up, when, with
    which version of the action, and what happened. Parameters are stored with personal data
    redacted; the system's answer itself is not kept (the reply made from it is the stored
    answer, which names this record in its provenance). Conversation and ticket are plain ids:
    answers/ knows nothing of the chat or the desk."""

    class Status(models.TextChoices):
        OK = "ok"
        NOT_FOUND = "not_found"
        FAILED = "failed"
        TIMEOUT = "timeout"
        REFUSED = "refused"
        AWAITING_PARAMETER = "awaiting_parameter"

    action = models.ForeignKey(Action, null=True, on_delete=models.SET_NULL, related_name="calls")
    action_name = models.CharField(max_length=100)
    action_version = models.PositiveIntegerField()
    conversation = models.CharField(max_length=64, blank=True, db_index=True)
    ticket = models.BigIntegerField(null=True, blank=True, db_index=True)
    caller = models.CharField(max_length=200, blank=True, help_text="chat, desk, or the admin who tested it.")
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=24, choices=Status.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action_name} v{self.action_version}: {self.status}"
