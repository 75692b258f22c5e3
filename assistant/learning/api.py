"""Learning API: agents correct the assistant's answers (assistant/learning/corrections.py).
Listed with the website assistant's conversations in the schema, as before it had a module of
its own. Staff with the agent role."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from assistant.learning.corrections import do_correct_answer
from core.auth import require_api_role
from core.roles import AGENT

router = Router(tags=["website assistant"])


class Correction(Schema):
    answer: str


@router.post(
    "/messages/{message_id}/correct",
    summary="Correct an assistant answer; the correction is kept as a training example",
)
def correct(request: HttpRequest, message_id: int, body: Correction) -> dict[str, Any]:
    require_api_role(request, AGENT)
    example = do_correct_answer(request.user, message_id, body.answer)
    return {"training_example": example.pk, "message": message_id}
