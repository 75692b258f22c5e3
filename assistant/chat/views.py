"""Pages: the demo company site (with the widget), cited knowledge-base documents, and the agents'
console (live chats, analytics and exports)."""

from __future__ import annotations

import csv

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.http import require_GET

from assistant.insights import analytics
from core.roles import AGENT, has_role
from inference.warmth import warmth
from retrieval.models import Document


@require_GET
def demo_site(request: HttpRequest) -> HttpResponse:
    host = f"{request.scheme}://{request.get_host()}"
    return render(request, "index.html", {"widget_src": static("parley/widget.js"), "parley_host": host})


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: 200 while the process answers, with each model's warmth for the curious."""
    models, _ = warmth.snapshot()
    return JsonResponse({"status": "ok", "models": models})


@require_GET
def health_ready(request: HttpRequest) -> JsonResponse:
    """Readiness, for a load balancer: 503 until serve's warm-up is over, then 200."""
    models, ready = warmth.snapshot()
    return JsonResponse({"ready": ready, "models": models}, status=200 if ready else 503)


@require_GET
def kb_document(request: HttpRequest, document_id: int) -> HttpResponse:
    """A public knowledge-base document as cited in answers (private ones are 404, like missing)."""
    try:
        document = Document.objects.get(pk=document_id, public=True, status=Document.Status.READY)
    except Document.DoesNotExist as exc:
        raise Http404("No such document") from exc
    return render(request, "kb_document.html", {"document": document, "chunks": document.chunks.all()})


@require_GET
@login_required
def console(request: HttpRequest) -> HttpResponse:
    """The agents' live chat console (staff with the agent role)."""
    _agent_only(request)
    return render(request, "console/index.html")


def _agent_only(request: HttpRequest) -> None:
    if not has_role(request.user, AGENT):
        raise PermissionDenied("This page is for agents.")


def _days(request: HttpRequest) -> int:
    try:
        return min(max(int(request.GET.get("days", "30")), 1), 3650)
    except ValueError:
        return 30


@require_GET
@login_required
def console_analytics(request: HttpRequest) -> HttpResponse:
    """What the assistant is worth: resolution, handoffs, thumbs-down, questions and gaps."""
    _agent_only(request)
    return render(request, "console/analytics.html", {"stats": analytics.summary(_days(request))})


EXPORTS = {
    "feedback": (analytics.feedback_rows, analytics.FEEDBACK_FIELDS),
    "conversations": (analytics.conversation_rows, analytics.CONVERSATION_FIELDS),
}


@require_GET
@login_required
def console_export(request: HttpRequest, what: str, fmt: str) -> HttpResponse:
    """Feedback or conversations of the last ?days=N days as CSV or JSON."""
    _agent_only(request)
    if what not in EXPORTS or fmt not in ("csv", "json"):
        raise Http404("No such export")
    rows_for, fields = EXPORTS[what]
    rows = rows_for(_days(request))
    filename = f"parley-{what}.{fmt}"
    if fmt == "json":
        response = JsonResponse(rows, safe=False)
    else:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        writer = csv.DictWriter(response, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _cell(value):
    """Visitors' words go into spreadsheets: a leading = + - @ would run as a formula (OWASP
    "CSV injection"), so such text gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
