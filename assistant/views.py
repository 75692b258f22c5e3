"""Public pages: the demo company site (with the widget) and cited knowledge-base documents."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.http import require_GET

from config.roles import AGENT, has_role
from retrieval.models import Document


@require_GET
def demo_site(request: HttpRequest) -> HttpResponse:
    host = f"{request.scheme}://{request.get_host()}"
    return render(request, "index.html", {"widget_src": static("parley/widget.js"), "parley_host": host})


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


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
    if not has_role(request.user, AGENT):
        raise PermissionDenied("This page is for agents.")
    return render(request, "console/index.html")
