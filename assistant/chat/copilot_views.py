"""The copilot on a desk ticket's page: `POST /console/desk/<id>/suggest` answers a suggested reply
as JSON (assistant/chat/copilot.py). Agents only, as every staff page (anonymous: to the login page;
no agent role: 403), with the session's CSRF token; counted against the agent's console allowance
like every frame of the live console (CHAT_CONSOLE_FRAMES_PER_MINUTE). Refusals past the role
check are the API's body, `{"error": {"code", "message"}}`.

Here rather than in assistant/desk/views.py because the suggestion comes from the chat's answer
path, and desk/ may not import chat/ (chat/ already imports desk/)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from assistant.chat.copilot import desk_suggestion
from assistant.chat.limits import check_rate
from assistant.desk.tickets import get_ticket
from core.errors import DomainError
from core.roles import AGENT, role_required


def _error(exc: DomainError) -> JsonResponse:
    status = 429 if exc.code == "rate_limited" else exc.status
    return JsonResponse(exc.body(), status=status)


@require_POST
@role_required(AGENT)
def desk_suggest(request: HttpRequest, ticket_id: int) -> JsonResponse:
    try:
        check_rate("console", agent=str(request.user.pk))
        return JsonResponse(desk_suggestion(get_ticket(ticket_id), request.user))
    except DomainError as exc:
        return _error(exc)
