"""An action's parameters: what to ask the customer for, and the pattern a value must match.

Stored on the action as JSON, a list of objects:

    {"name": "order", "label": "your order number", "pattern": "ZX\\d{4}", "example": "ZX1234"}

Patterns are written by admins but run over customers' text, so they are bounded: at most
MAX_PATTERN_CHARS long, run by the `regex` module with a time limit (a pattern that backtracks
for ever is cut off and finds nothing), over at most MAX_TEXT_CHARS of text. A value is taken
only where the whole value matches the pattern and it stands on its own (not inside a longer
word), so "ZX1234" is found in "my order ZX1234, please" and not in "AZX12345".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import regex

MAX_PATTERN_CHARS = 200
MAX_TEXT_CHARS = 4000  # of customer text searched for one parameter
MAX_VALUE_CHARS = 200
MAX_PARAMETERS = 8
PATTERN_TIMEOUT = 0.05  # seconds per search
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class ParameterError(ValueError):
    """A parameter definition that cannot be used, with a message for the admin."""


@dataclass(frozen=True)
class Parameter:
    name: str
    label: str  # what to ask the customer for: "your order number"
    pattern: str
    example: str = ""

    def compiled(self) -> regex.Pattern[str]:
        return _compile(self.pattern)

    def question(self) -> str:
        """The one short turn that asks for it."""
        ask = f"What is {self.label}?"
        return f"{ask} It looks like {self.example}." if self.example else ask

    def find(self, text: str) -> str | None:
        """The first value in `text` that fully matches the pattern, standing on its own."""
        bounded = regex.compile(rf"(?<![\w-])(?:{self.pattern})(?![\w-])", regex.V0)
        try:
            match = bounded.search(text[:MAX_TEXT_CHARS], timeout=PATTERN_TIMEOUT)
        except TimeoutError:
            return None
        if match is None or not self.accepts(match.group(0)):
            return None
        return str(match.group(0))

    def accepts(self, value: str) -> bool:
        if not value or len(value) > MAX_VALUE_CHARS:
            return False
        try:
            return self.compiled().fullmatch(value, timeout=PATTERN_TIMEOUT) is not None
        except TimeoutError:
            return False

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "label": self.label, "pattern": self.pattern, "example": self.example}


def _compile(pattern: str) -> regex.Pattern[str]:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ParameterError(f"A pattern may be at most {MAX_PATTERN_CHARS} characters long.")
    try:
        return regex.compile(pattern, regex.V0)
    except (regex.error, TypeError, ValueError, OverflowError) as exc:
        raise ParameterError(
            f"The pattern {pattern[:60]!r} is not a valid regular expression ({exc})."
        ) from exc


def parse_parameters(raw: Any) -> list[Parameter]:
    """The parameters of an action's stored JSON; ParameterError saying what is wrong."""
    if not isinstance(raw, list):
        raise ParameterError("Parameters must be a list of objects with name, label and pattern.")
    if len(raw) > MAX_PARAMETERS:
        raise ParameterError(f"An action may have at most {MAX_PARAMETERS} parameters.")
    parameters: list[Parameter] = []
    for n, item in enumerate(raw, 1):
        if not isinstance(item, Mapping):
            raise ParameterError(f"Parameter {n} must be an object with name, label and pattern.")
        unknown = set(item) - {"name", "label", "pattern", "example"}
        if unknown:
            raise ParameterError(f"Parameter {n} has unknown keys: {', '.join(sorted(map(str, unknown)))}.")
        name, label, pattern, example = (item.get(k, "") for k in ("name", "label", "pattern", "example"))
        if not all(isinstance(v, str) for v in (name, label, pattern, example)):
            raise ParameterError(f"Parameter {n}: name, label, pattern and example must be text.")
        if not _NAME.fullmatch(name):
            raise ParameterError(
                f"Parameter {n}: the name must be lower-case letters, digits and _ (like order_number)."
            )
        if name in ("secret", "visitor") or any(p.name == name for p in parameters):
            raise ParameterError(f"Parameter {n}: the name {name!r} is taken.")
        if not label.strip() or len(label) > 100:
            raise ParameterError(f"Parameter {n}: the label (what to ask for) must be 1-100 characters.")
        if not pattern:
            raise ParameterError(f"Parameter {n}: a pattern is needed.")
        parameter = Parameter(name, label.strip(), pattern, example.strip())
        parameter.compiled()
        if parameter.example and not parameter.accepts(parameter.example):
            raise ParameterError(f"Parameter {n}: the example {example!r} does not match the pattern.")
        parameters.append(parameter)
    return parameters


def extract(parameters: Sequence[Parameter], texts: Iterable[str]) -> dict[str, str]:
    """Each parameter's value from `texts` (the customer's own messages, newest first): the
    first text that holds one wins."""
    texts = list(texts)
    values: dict[str, str] = {}
    for parameter in parameters:
        for text in texts:
            value = parameter.find(text)
            if value is not None:
                values[parameter.name] = value
                break
    return values


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def fill_url(template: str, values: Mapping[str, str]) -> str:
    """The endpoint with each {name} replaced by its value, percent-encoded (a "/" or "?" in a
    value stays part of the value, never a new path segment or query)."""
    return _PLACEHOLDER.sub(lambda m: quote(values.get(m.group(1), ""), safe=""), template)


def fill_header(template: str, values: Mapping[str, str]) -> str:
    """A header value with {secret} and {visitor} filled; line breaks can never get in."""
    filled = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    return filled.replace("\r", " ").replace("\n", " ")
