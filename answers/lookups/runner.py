"""The interface the chat and the desk use: plan a lookup for a question, ask for a missing
parameter, run it and get the reply to give, recorded (see the package docstring)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings

from answers.lookups.http import Outcome, call_http, endpoint_refusal
from answers.lookups.limits import LimitReached, check_call, record_not_found
from answers.lookups.match import find_action
from answers.lookups.models import Action, ActionCall
from answers.lookups.params import Parameter, extract, fill_header
from answers.lookups.render import TemplateError, render
from answers.lookups.vault import SecretUnreadable
from core.audit import record_audit
from core.redaction import redact

log = logging.getLogger(__name__)

ASK_TEMPLATE = "action-ask"
REPLY_TEMPLATE = "action"
FAILED_TEXT = "Sorry, I could not look that up in our system just now. Would you like to talk to a person?"
TIMEOUT_TEXT = (
    "Sorry, our system took too long to answer, so I could not look that up. "
    "Would you like to talk to a person?"
)
EMPTY_TEXT = "Our system answered, but with nothing I can show you. Would you like to talk to a person?"


@dataclass(frozen=True)
class Plan:
    """An action picked for a question, the values found for it, and the first one missing."""

    action: Action
    values: dict[str, str]
    missing: Parameter | None
    score: float  # similarity to the closest example (1.0: the customer answered our question)


@dataclass(frozen=True)
class LookupReply:
    """What to tell the customer, and the record behind it."""

    text: str
    call: ActionCall
    offer_person: bool
    verified: bool  # the text is the template's, over the system's own values

    @property
    def status(self) -> str:
        return self.call.status

    @property
    def template(self) -> str:
        """The stored answer's prompt_template: "action-ask:ID" (a question for a parameter) or
        "action:ID" (an answer from the system, or why there is none)."""
        kind = ASK_TEMPLATE if self.call.status == ActionCall.Status.AWAITING_PARAMETER else REPLY_TEMPLATE
        return f"{kind}:{self.call.action_id}"

    def retrieved(self) -> list[dict[str, Any]]:
        """Its provenance, in place of retrieved chunks."""
        return [
            {"action": self.call.action_id, "version": self.call.action_version, "action_call": self.call.pk}
        ]

    def support(self) -> list[dict[str, Any]]:
        """The reply's support record: supported by the system (the ActionCall), not a passage."""
        if not self.verified:
            return []
        return [
            {
                "text": self.text,
                "verdict": "supported",
                "score": 1.0,
                "chunk": None,
                "unknown": [],
                "source": None,
                "evidence": "",
                "system": self.call.action_name,
                "action_call": self.call.pk,
            }
        ]


def asked_action(template: str) -> int | None:
    """The action an earlier answer asked a parameter for (its prompt_template), if any."""
    kind, _, pk = template.partition(":")
    return int(pk) if kind == ASK_TEMPLATE and pk.isdigit() else None


def plan_lookup(
    question: str, *, texts: Sequence[str], collection: str | None, asked: int | None = None
) -> Plan | None:
    """The lookup `question` asks for, or None. `texts`: the customer's own messages of this
    conversation, newest first, `question` included: values are only ever taken from them.
    `asked`: the action whose parameter the previous answer asked for; a question that supplies
    one continues it."""
    if asked is not None:
        action = Action.objects.filter(pk=asked, enabled=True).first()
        if action is not None:
            parameters = action.parameter_list()
            if extract(parameters, [question]):
                return _plan(action, parameters, texts, 1.0)
    match = find_action(question, collection)
    if match is None:
        return None
    return _plan(match.action, match.action.parameter_list(), texts, match.score)


def _plan(action: Action, parameters: list[Parameter], texts: Sequence[str], score: float) -> Plan:
    values = extract(parameters, texts)
    missing = next((p for p in parameters if p.name not in values), None)
    return Plan(action, values, missing, score)


def ask_for_parameter(
    plan: Plan, *, conversation: str = "", ticket: int | None = None, caller: str = "chat"
) -> LookupReply:
    """Record that the customer was asked for the missing parameter; the question to ask."""
    assert plan.missing is not None
    call = _record(plan, ActionCall.Status.AWAITING_PARAMETER, conversation, ticket, caller)
    return LookupReply(plan.missing.question(), call, offer_person=False, verified=False)


@dataclass(frozen=True)
class Performed:
    """A call made (or refused by a limit), before it is recorded."""

    outcome: Outcome
    text: str
    verified: bool
    started: float


def run_lookup(
    plan: Plan,
    *,
    visitor: str,
    conversation: str = "",
    ticket: int | None = None,
    caller: str = "chat",
    actor: Any = None,
) -> LookupReply:
    """Call the action with the plan's values (all present), record the call (ActionCall and the
    audit log) and return the reply: `perform` then `record_lookup`. Blocking: at most the
    action's timeout."""
    performed = perform(plan, visitor)
    return record_lookup(
        plan, performed, conversation=conversation, ticket=ticket, caller=caller, actor=actor
    )


def perform(plan: Plan, visitor: str) -> Performed:
    """The call and its reply text, counted against the limits; no database write, so an async
    caller can run it on a thread of its own while a slow system makes it wait. `visitor`: whose
    limits it counts against and, where the action's headers ask for {visitor}, the identity
    the system is told."""
    action = plan.action
    started = time.perf_counter()
    try:
        check_call(visitor, action.pk)
    except LimitReached as exc:
        outcome = Outcome("refused", error=f"Limit reached: {exc.message}")
        return Performed(outcome, f"{exc.message} You can also ask for a person.", False, started)
    outcome = _call(action, plan.values, visitor)
    text, verified = _reply(action, outcome, plan.values)
    if outcome.status == ActionCall.Status.NOT_FOUND:
        record_not_found(visitor)
    return Performed(outcome, text, verified, started)


def record_lookup(
    plan: Plan,
    performed: Performed,
    *,
    conversation: str = "",
    ticket: int | None = None,
    caller: str = "chat",
    actor: Any = None,
) -> LookupReply:
    """Record a performed call (ActionCall, audit log) and return the reply to give."""
    outcome = performed.outcome
    call = _record(plan, outcome.status, conversation, ticket, caller, outcome, performed.started, actor)
    log.info("event=action_call action=%s status=%s call=%s", plan.action.pk, outcome.status, call.pk)
    offer = not performed.verified or outcome.status != ActionCall.Status.OK
    return LookupReply(performed.text, call, offer_person=offer, verified=performed.verified)


def _call(action: Action, values: dict[str, str], visitor: str) -> Outcome:
    timeout = min(float(action.timeout_seconds), float(settings.ACTIONS_MAX_TIMEOUT_SECONDS))
    try:
        secret = action.get_secret()
    except SecretUnreadable as exc:
        return Outcome("failed", error=str(exc))
    headers = {
        name: fill_header(value, {"secret": secret, "visitor": visitor})
        for name, value in (action.headers or {}).items()
    }
    if action.kind == Action.Kind.MCP:
        return _call_mcp(action, values, headers, timeout)
    return call_http(
        url_template=action.url,
        method=action.method,
        headers=action.headers or {},
        values=values,
        secret=secret,
        visitor=visitor,
        timeout=timeout,
    )


def _call_mcp(action: Action, values: dict[str, str], headers: dict[str, str], timeout: float) -> Outcome:
    """A tool of an MCP server (answers/lookups/mcp.py), under the same rules for its address."""
    try:
        from answers.lookups import mcp
    except ImportError:
        return Outcome("failed", error="MCP actions are not available in this installation.")
    if action.mcp_transport == "http":
        refusal = endpoint_refusal(action.mcp_target)
        if refusal is not None:
            return Outcome("refused", error=refusal)
    started = time.monotonic()
    try:
        data = async_to_sync(mcp.call_mcp_tool)(
            action.mcp_transport,
            action.mcp_target,
            action.mcp_tool,
            dict(values),
            timeout,
            headers=headers if action.mcp_transport == "http" else None,
            allowed_hosts=tuple(settings.ACTIONS_PRIVATE_HOSTS),  # may resolve privately
        )
    except mcp.McpError as exc:
        status = "timeout" if time.monotonic() - started >= timeout else "failed"
        return Outcome(status, error=exc.message[:500])
    return Outcome("ok", data=data)


def _reply(action: Action, outcome: Outcome, values: dict[str, str]) -> tuple[str, bool]:
    """The customer's reply for an outcome, and whether it is the system's own (verified)."""
    if outcome.status == ActionCall.Status.TIMEOUT:
        return TIMEOUT_TEXT, False
    if outcome.status not in (ActionCall.Status.OK, ActionCall.Status.NOT_FOUND):
        return FAILED_TEXT, False
    ok = outcome.status == ActionCall.Status.OK
    source = action.reply_template if ok else (action.not_found_template or _default_not_found())
    try:
        text, _missing = render(source, outcome.data if ok else {}, values)
    except (TemplateError, ValueError, TypeError, RecursionError) as exc:
        log.warning("event=action_template_failed action=%s error=%s", action.pk, type(exc).__name__)
        return FAILED_TEXT, False
    if not text:
        return EMPTY_TEXT, False
    return text, True


def _default_not_found() -> str:
    return str(Action._meta.get_field("not_found_template").default)


def _record(
    plan: Plan,
    status: str,
    conversation: str,
    ticket: int | None,
    caller: str,
    outcome: Outcome | None = None,
    started: float | None = None,
    actor: Any = None,
) -> ActionCall:
    action = plan.action
    parameters = {name: redact(value).text for name, value in plan.values.items()}
    call = ActionCall.objects.create(
        action=action,
        action_name=action.name,
        action_version=action.version,
        conversation=conversation,
        ticket=ticket,
        caller=caller[:200],
        parameters=parameters,
        status=status,
        http_status=outcome.http_status if outcome else None,
        latency_ms=round((time.perf_counter() - started) * 1000) if started is not None else None,
        error=(outcome.error if outcome else "")[:500],
    )
    record_audit(
        actor if actor is not None else caller,
        "action.call",
        target_type="action",
        target_id=action.pk,
        call=call.pk,
        version=action.version,
        status=status,
        conversation=conversation,
        ticket=ticket,
        parameters=parameters,
    )
    return call


def mcp_tools(action: Action) -> list[dict[str, Any]]:
    """The tools of an MCP action's server (for the admin picking one), under the same rules for
    its address and command as a call; raises McpError with a plain message."""
    from answers.lookups import mcp

    if action.kind != Action.Kind.MCP or not action.mcp_target:
        raise mcp.McpError("This action does not name an MCP server.")
    if action.mcp_transport == "http":
        refusal = endpoint_refusal(action.mcp_target)
        if refusal is not None:
            raise mcp.McpError(refusal)
    try:
        secret = action.get_secret()
    except SecretUnreadable as exc:
        raise mcp.McpError(str(exc)) from exc
    headers = {
        name: fill_header(value, {"secret": secret, "visitor": ""})
        for name, value in (action.headers or {}).items()
    }
    timeout = min(float(action.timeout_seconds), float(settings.ACTIONS_MAX_TIMEOUT_SECONDS))
    return async_to_sync(mcp.list_mcp_tools)(
        action.mcp_transport,
        action.mcp_target,
        timeout,
        headers=headers if action.mcp_transport == "http" else None,
        allowed_hosts=tuple(settings.ACTIONS_PRIVATE_HOSTS),
    )
