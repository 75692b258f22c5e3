"""The JSON API fuzzed against its own OpenAPI schema (schemathesis, Hypothesis underneath): every
operation, as an anonymous client and as each role with a bearer token. Nothing a client sends may
produce a 500 or a response outside the schema (status codes, content types and bodies).

Left out: schemathesis's "schema-valid request rejected" check. The API validates more than the
schema can say (a URL's scheme, an e-mail address, a state machine's allowed moves) and answers
those with a 4xx in the contract's error shape; that check would call each of them a defect.

Seeded and bounded (derandomize, a fixed example count per operation and persona) so the run is
the same every time and fits the suite's budget. Requests go through Django's WSGI handler in the
test's own thread and database transaction: the real views, auth and error handling, no server.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from core.roles import ADMIN, AGENT, AUDITOR, EDITOR, KNOWLEDGE
from tests.conftest import _user

pytestmark = pytest.mark.django_db

PERSONAS = {
    "anonymous": (),
    "knowledge": (KNOWLEDGE,),
    "agent": (AGENT,),
    "editor": (EDITOR,),
    "admin": (ADMIN,),
    "auditor": (AUDITOR,),
    "every_role": (KNOWLEDGE, AGENT, EDITOR, ADMIN, AUDITOR),
}
EXAMPLES = 20  # per operation and persona: 34 operations x 7 personas x 20


@pytest.fixture
def world(db):
    """A row of each kind an operation acts on, at id 1 (Hypothesis tries small ids early), so the
    fuzzed calls reach the views' real work and not only their 404s."""
    from content.models import Brief, ContentItem
    from retrieval.models import Document
    from tests.test_desk_console import make_ticket

    owner = _user("fuzz-owner", EDITOR, AGENT)
    make_ticket()
    brief = Brief.objects.create(topic="Routers", keyphrase="router", created_by=owner)
    ContentItem.objects.create(
        brief=brief,
        state="in_review",
        generation="done",
        title="Router tips",
        slug="router-tips",
        intro="A router intro.",
        sections=[{"id": "s1", "heading": "Restart", "text": "Restart the router."}],
        faq=[{"question": "Why restart?", "answer": "It clears faults."}],
    )
    Document.objects.create(title="Router guide", source="router.md", status=Document.Status.READY)


@pytest.fixture
def api_schema(world, settings, tmp_path):
    settings.DATA_DIR = tmp_path  # mail and uploads written by the fuzzed calls stay in the test's folder
    settings.MAIL_INBOUND_SECRET = "fuzz-secret"
    return schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


def headers_for(persona: str) -> dict[str, str]:
    from core.models import ApiToken

    if persona == "anonymous":
        return {}
    user = _user(f"fuzz-{persona}", *PERSONAS[persona])
    _, raw = ApiToken.issue(user, name="fuzz")
    return {"Authorization": f"Bearer {raw}"}


@pytest.mark.parametrize("persona", list(PERSONAS))
def test_no_request_gets_a_500_or_a_response_outside_the_schema(api_schema, persona):
    headers = headers_for(persona)
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(), known=st.booleans())
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported as is
        )
        def run(case, known: bool) -> None:
            if known and case.path_parameters:  # half the calls name the world's rows
                case.path_parameters = {
                    name: ("1" if name.endswith("_id") else value)
                    for name, value in case.path_parameters.items()
                }
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collected: one run reports every operation
            failures.append(f"{operation.label}: {exc}"[:3000])
    assert not failures, "\n\n".join(failures)
