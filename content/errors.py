"""The content studio's domain errors. Both are core's DomainError(code, message, status): the
API's one handler (config/api.py) turns them into its error body, the studio pages into a
message on the page."""

from __future__ import annotations

from core.errors import DomainError


class StudioError(DomainError):
    """A change to an item that was refused: a conflict unless the status says otherwise."""

    default_status = 409


class ExportError(DomainError):
    """An item that cannot be exported safely (an image file name that could leave images/, an
    unreadable PNG, a base URL that is not http or https); the message can be shown to the
    editor. A conflict: the item as it is cannot be exported."""

    default_status = 409
