"""The staff pages' one shell (templates/base.html): one header with exactly the sections a
person's roles open and the current one marked, one stylesheet and a favicon served by us,
nothing from elsewhere, and the ticket page laid out as agents work. Driven through Django's
test client; the header is read with the standard library's HTML parser."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.urls import reverse

from assistant.models import Draft, MailMessage, Ticket
from tests.conftest import _user

pytestmark = pytest.mark.django_db

# Each section's menu label and the page its link opens.
SECTIONS = {
    "Live chats": "console",
    "Email desk": "desk",
    "Analytics": "console-analytics",
    "Studio": "studio",
    "Governance": "governance",
    "Audit log": "audit",
    "Models": "console-models",
}
ALLOWED = {
    "agent": ["Live chats", "Email desk", "Analytics"],
    "editor": ["Studio"],
    "administrator": ["Governance", "Audit log", "Models"],
    "auditor": ["Audit log", "Models"],
}


class Header(HTMLParser):
    """What a page's <header class="site-header"> holds: the brand, the menu's links (label,
    href, aria-current), the signed-in name and the sign-out button."""

    def __init__(self) -> None:
        super().__init__()
        self.headers = 0
        self.links: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.buttons: list[str] = []
        self._in_header = self._in_nav = False
        self._link: dict[str, str | None] | None = None
        self._button = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "header" and "site-header" in (attrs.get("class") or ""):
            self.headers += 1
            self._in_header = True
        elif self._in_header and tag == "nav":
            self._in_nav = True
        elif self._in_nav and tag == "a":
            self._link = {"href": attrs.get("href"), "current": attrs.get("aria-current"), "text": ""}
        elif self._in_header and tag == "button":
            self._button = True
            self.buttons.append("")

    def handle_endtag(self, tag):
        if tag == "header":
            self._in_header = False
        elif tag == "nav":
            self._in_nav = False
        elif tag == "a" and self._link is not None:
            self.links.append((self._link["text"].strip(), self._link["href"], self._link["current"]))
            self._link = None
        elif tag == "button":
            self._button = False

    def handle_data(self, data):
        if self._link is not None:
            self._link["text"] += data
        elif self._button:
            self.buttons[-1] += data.strip()
        elif self._in_header and data.strip():
            self.text.append(data.strip())


def header_of(html: str) -> Header:
    parser = Header()
    parser.feed(html)
    return parser


@pytest.fixture
def people(agent, editor, administrator, auditor):
    return {"agent": agent, "editor": editor, "administrator": administrator, "auditor": auditor}


@pytest.mark.parametrize("who", list(ALLOWED))
def test_every_section_page_shows_one_header_with_exactly_the_allowed_sections(people, who):
    client = Client()
    client.force_login(people[who])
    allowed = ALLOWED[who]
    for current in allowed:
        response = client.get(reverse(SECTIONS[current]))
        assert response.status_code == 200, (who, current)
        html = response.content.decode()
        header = header_of(html)
        assert header.headers == 1 and html.count("<header") == 1
        assert [label for label, _, _ in header.links] == allowed
        assert [href for _, href, _ in header.links] == [reverse(SECTIONS[label]) for label in allowed]
        marked = [label for label, _, aria in header.links if aria == "page"]
        assert marked == [current], (who, current, marked)
        assert people[who].get_username() in header.text
        assert header.buttons == ["Sign out"]
        assert f"<title>{current} · Parley</title>" in html


def test_a_superuser_sees_every_section_in_the_menu_order(db):
    boss = _user("root")
    boss.is_superuser = True
    boss.save()
    client = Client()
    client.force_login(boss)
    header = header_of(client.get(reverse("audit")).content.decode())
    # ... and the Django admin (Sites, people and their roles) last.
    assert [label for label, _, _ in header.links] == [*SECTIONS, "Administration"]
    assert [label for label, _, aria in header.links if aria == "page"] == ["Audit log"]


def test_the_sub_pages_mark_their_section(agent):
    ticket = make_ticket()
    client = Client()
    client.force_login(agent)
    header = header_of(client.get(reverse("desk-ticket", args=[ticket.pk])).content.decode())
    assert [label for label, _, aria in header.links if aria == "page"] == ["Email desk"]


def test_the_header_names_people_by_their_full_name_when_they_have_one(agent):
    agent.first_name, agent.last_name = "Alex", "<b>Rivera</b>"
    agent.save()
    client = Client()
    client.force_login(agent)
    html = client.get(reverse("desk")).content.decode()
    assert "Alex <b>Rivera</b>" in header_of(html).text  # text, not markup
    assert "<b>Rivera</b>" not in html


def test_someone_without_a_role_and_anonymous_pages_get_no_menu(outsider):
    request = RequestFactory().get("/")
    request.user = outsider
    header = header_of(render_to_string("base.html", request=request))
    assert header.headers == 1 and header.links == [] and header.buttons == ["Sign out"]

    request.user = AnonymousUser()
    html = render_to_string("base.html", request=request)
    header = header_of(html)
    assert header.headers == 1 and header.links == [] and header.buttons == []
    assert header.text == ["Parley"]


def test_the_stylesheet_and_the_favicon_are_ours_and_served(client, db):
    for name, kind in (("parley/parley.css", "text/css"), ("parley/favicon.svg", "image/svg+xml")):
        assert finders.find(name), name
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response["Content-Type"].startswith(kind), name
    assert not finders.find("parley/desk.css") and not finders.find("parley/studio.css")
    css = open(finders.find("parley/parley.css"), encoding="utf-8").read()
    assert "@import" not in css and not re.search(r"url\(\s*['\"]?(https?:)?//", css)


def test_no_page_loads_anything_from_elsewhere(people, db):
    pages = [("agent", "/"), *((who, reverse(SECTIONS[s])) for who, ss in ALLOWED.items() for s in ss)]
    for who, url in pages:
        client = Client()
        client.force_login(people[who])
        html = client.get(url).content.decode()
        assert '<link rel="icon" href="/static/parley/favicon.svg"' in html, url
        for tag in re.findall(r"<(?:script|link)\b[^>]*>", html):
            assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", tag), (url, tag)
        if url != "/":
            assert html.count('href="/static/parley/parley.css"') == 1, url
            assert "<style" not in html and 'style="' not in html, url  # the CSP: styles from a file


def make_ticket(subject: str = "Wifi keeps DROPPING on my iPhone") -> Ticket:
    ticket = Ticket.objects.create(
        subject=subject,
        customer_email="ana@example.com",
        customer_name="Ana Example",
        status=Ticket.Status.NEEDS_REVIEW,
        category="connectivity",
        category_confidence=0.91,
        triage={
            "category": {
                "scores": {"connectivity": 0.62, "billing": 0.1},
                "nearest": [
                    {"label": "connectivity", "text": "My internet keeps cutting out", "score": 0.71}
                ],
            }
        },
    )
    question = MailMessage.objects.create(
        ticket=ticket,
        direction=MailMessage.Direction.IN,
        message_id=f"<{ticket.reference}@example.com>",
        from_email="ana@example.com",
        subject=subject,
        text="My wifi drops every evening.",
        reply_text="My wifi drops every evening.",
    )
    Draft.objects.create(ticket=ticket, version=1, body="Restart the router.", replying_to=question)
    return ticket


def test_the_ticket_page_puts_thread_and_draft_side_by_side_then_the_actions_then_the_triage(agent):
    ticket = make_ticket()
    client = Client()
    client.force_login(agent)
    html = client.get(reverse("desk-ticket", args=[ticket.pk])).content.decode()

    grid = html.index('<div class="grid-2">')
    thread, draft = html.index('id="thread"'), html.index('id="draft"')
    bar = html.index('<div class="sticky-actions"')
    triage = html.index('<details class="card triage"')
    assert grid < thread < draft < bar < triage
    assert html.index("My wifi drops every evening.") < bar and html.index("Restart the router.") < bar

    actions = html[bar:triage]
    for name in ("edit", "regenerate", "reject", "reassign"):
        assert reverse(f"desk-{name}", args=[ticket.pk]) in actions, name
    # Approve and send submits the draft's form (the reply's text box sits with the draft).
    assert 'form="approve-form" class="btn btn-primary">Approve and send</button>' in actions
    approve_form = f'action="{reverse("desk-approve", args=[ticket.pk])}" id="approve-form"'
    assert approve_form in html[draft:bar]

    folded = html[triage : html.index("</details>", triage)]
    assert "Why: the nearest labelled examples" in folded and "My internet keeps cutting out" in folded
    assert "My internet keeps cutting out" not in html[:triage]  # the reasons only in the fold

    # The subject as the customer wrote it, in the queue and on the page.
    assert "Wifi keeps DROPPING on my iPhone" in html
    assert "Wifi keeps DROPPING on my iPhone" in client.get(reverse("desk")).content.decode()


@pytest.mark.parametrize(
    ("who", "page", "says"),
    [
        ("agent", "desk", "No tickets waiting for review."),
        ("editor", "studio", "No articles yet."),
        ("administrator", "console-models", "No chat model registered."),
        ("agent", "console-analytics", "No questions yet."),
    ],
)
def test_empty_lists_say_what_to_do_next(people, who, page, says):
    client = Client()
    client.force_login(people[who])
    html = client.get(reverse(page)).content.decode()
    assert f'<p class="empty"><strong>{says}</strong>' in html


def test_every_console_and_studio_page_belongs_to_exactly_one_section():
    from django.urls import get_resolver

    from core.nav import SECTIONS

    names = [
        p.name
        for p in get_resolver().url_patterns
        if getattr(p, "name", None) and str(p.pattern).startswith(("console", "studio"))
    ]
    assert len(names) > 20
    for name in names:
        assert sum(s.has(name) for s in SECTIONS) == 1, name
