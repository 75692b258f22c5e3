"""The base of the inference layer's errors (InferenceError, RegistryError, FineTuneError and
their subclasses): core's DomainError whose class names its code, default message and status,
so `raise ModelBusy()` or `raise VersionNotFound("No model version 7.")` is all a caller writes."""

from __future__ import annotations

from core.errors import DomainError


class CodedError(DomainError):
    code = "error"
    message = "Something went wrong."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(code or self.code, message or self.message)
        # As before these derived from DomainError: str() is the message alone (callers log and
        # store it), and a pickled copy (a Celery result) is rebuilt from it, code and status
        # coming back with the instance's __dict__.
        self.args = (self.message,)
