"""Private documents (`ingest --private`, `public=False`) never reach a visitor or a customer:
search's public-only filter in every mode (applied before the top k, so k hits still come back),
the chat answer path, desk drafts, the outbound mail's sources footer and the content studio's
automatic sources; staff searching through the API still find them. Real embedder, real index,
real chat model where an answer is generated."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from assistant.models import Draft, MailMessage, Message, Ticket
from retrieval.actions.ingest import do_ingest_file, do_ingest_path
from retrieval.models import Chunk, Document
from retrieval.search import MODES, search
from tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_CODE = "NIGHTJAR-77"
INTRANET = "https://intranet.brightline.local/salaries"
PRIVATE_TEXT = (
    "# Staff discount codes\n\n"
    f"The internal staff discount code for the Gigabit plan is {SECRET_CODE}. Never share the staff "
    f"discount code with customers. Salary bands for engineers are on the intranet at {INTRANET}.\n"
)
QUESTION = "What is the staff discount code for the Gigabit plan?"


@pytest.fixture
def private_doc(demo_kb, tmp_path) -> Document:
    """The demo knowledge base (public) and one private document that answers QUESTION best."""
    path = tmp_path / "staff-discounts.md"
    path.write_text(PRIVATE_TEXT)
    do_ingest_file(path, public=False)
    return Document.objects.get(source=str(path.resolve()))


# --- Search --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_public_only_search_never_returns_a_private_document(private_doc, mode):
    everything = search(QUESTION, k=3, mode=mode, public_only=False)
    assert everything[0].document_id == private_doc.pk  # the private one is the best answer
    visible = search(QUESTION, k=3, mode=mode, public_only=True)
    assert len(visible) == 3
    assert private_doc.pk not in {hit.document_id for hit in visible}
    assert all(SECRET_CODE not in hit.text for hit in visible)


@pytest.mark.parametrize("mode", MODES)
def test_public_only_search_still_returns_k_hits_when_private_chunks_fill_every_candidate_list(
    demo_kb, tmp_path, settings, mode
):
    # More private passages than either retriever's candidate depth, each closer to the query
    # than any public one: a filter applied after the candidates were taken would find nothing.
    settings.RETRIEVAL_DEPTH = 10
    folder = tmp_path / "internal"
    folder.mkdir()
    for i in range(25):
        (folder / f"gigabit-{i}.md").write_text(
            f"# Gigabit plan price\n\nHow much is the Gigabit plan? Internal margin note {i}: "
            "the Gigabit plan price and the Gigabit plan cost for staff.\n"
        )
    do_ingest_path(folder, public=False)
    private_ids = set(Document.objects.filter(public=False).values_list("pk", flat=True))
    query = "How much is the Gigabit plan price?"
    assert {h.document_id for h in search(query, k=10, mode=mode, public_only=False)} <= private_ids
    visible = search(query, k=5, mode=mode, public_only=True)
    assert len(visible) == 5
    assert not {h.document_id for h in visible} & private_ids
    assert any("Gigabit" in h.text for h in visible)  # still the best public passages


def test_staff_search_through_the_api_still_finds_private_documents(private_doc, client, agent, outsider):
    response = client.get("/api/search", {"q": QUESTION, "k": 3}, **bearer(agent))
    assert response.status_code == 200
    assert response.json()[0]["document_id"] == private_doc.pk
    assert client.get("/api/search", {"q": QUESTION}).status_code in (401, 403)
    assert client.get("/api/search", {"q": QUESTION}, **bearer(outsider)).status_code == 403


# --- The chat answer path --------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_visitor_never_gets_a_private_document_in_an_answer_or_citation(private_doc, text_generator):
    from assistant.chat.actions import stream_answer

    events = [e async for e in stream_answer(QUESTION, conversation_id=None)]
    said = "".join(e.data["text"] for e in events if e.kind == "token")
    citations = next(e.data["items"] for e in events if e.kind == "citations")
    message = await Message.objects.aget(pk=int(events[-1].data["message"]))
    private_chunks = await sync_to_async(set)(private_doc.chunks.values_list("pk", flat=True))
    assert not {r["chunk"] for r in message.retrieved} & private_chunks
    assert all(c["title"] != private_doc.title and "intranet" not in c["url"] for c in citations)
    assert SECRET_CODE not in said and all(SECRET_CODE not in c["snippet"] for c in citations)


# --- The email desk -----------------------------------------------------------------------------


def _ticket(body: str) -> Ticket:
    ticket = Ticket.objects.create(
        subject="Staff discount", customer_email="ana@example.com", customer_name="Ana Example"
    )
    MailMessage.objects.create(
        ticket=ticket,
        direction=MailMessage.Direction.IN,
        message_id=f"<{ticket.reference}@example.com>",
        from_email="ana@example.com",
        from_name="Ana Example",
        subject="Staff discount",
        text=body,
        reply_text=body,
    )
    return ticket


@pytest.mark.slow
def test_a_desk_draft_is_written_from_public_documents_only(private_doc, text_generator):
    from assistant.desk.drafting import write_draft

    draft = write_draft(_ticket(QUESTION))
    private_chunks = set(private_doc.chunks.values_list("pk", flat=True))
    assert draft.retrieved and not {r["chunk"] for r in draft.retrieved} & private_chunks
    assert all(c["title"] != private_doc.title for c in draft.citations)
    assert SECRET_CODE not in str(draft.prompt) and SECRET_CODE not in draft.body


def _document(title: str, url: str, *, public: bool) -> tuple[Document, Chunk]:
    document = Document.objects.create(
        title=title, source=url or f"/srv/{title}.md", url=url, public=public, status="ready"
    )
    return document, Chunk.objects.create(document=document, ordinal=0, text=f"{title} text")


def test_the_outbound_sources_footer_names_no_private_document(db):
    """Checked when the mail is rendered: a draft written before drafts were public-only, or a
    document made private after the draft, still names nothing private."""
    from assistant.desk.outbound import render

    public, public_chunk = _document("Router guide", "https://help.example.com/router", public=True)
    private, private_chunk = _document("Staff discount codes", INTRANET, public=False)
    handbook, _ = _document("Engineer handbook", "", public=False)  # its chunks are gone since
    ticket = _ticket("Is there a discount?")
    draft = Draft.objects.create(
        ticket=ticket,
        version=1,
        body="Restart the router [1]. Staff get a discount [2], see the handbook [3].",
        citations=[
            {"n": 1, "title": public.title, "url": public.url, "snippet": "..."},
            {"n": 2, "title": private.title, "url": private.url, "snippet": "..."},
            {"n": 3, "title": handbook.title, "url": f"/kb/{handbook.pk}/", "snippet": "..."},
        ],
        retrieved=[
            {"chunk": public_chunk.pk, "score": 0.9, "source": 1},
            {"chunk": private_chunk.pk, "score": 0.8, "source": 2},
            {"chunk": 10**9, "score": 0.7, "source": 3},
        ],
    )
    text, html = render(draft)
    assert "Router guide" in text and "https://help.example.com/router" in html
    for leaked in ("Staff discount codes", "intranet", "Engineer handbook"):
        assert leaked not in text and leaked not in html
    # Made private after the draft was written: gone from the footer too.
    Document.objects.filter(pk=public.pk).update(public=False)
    text, html = render(draft)
    assert "Router guide" not in text and "help.example.com" not in html


# --- The content studio ---------------------------------------------------------------------------


@pytest.mark.slow
def test_articles_draw_on_public_documents_unless_an_editor_names_a_private_one(private_doc, text_generator):
    from content.generation import _Writer
    from content.models import Brief, ContentItem

    brief = Brief.objects.create(topic="Staff discount code", keyphrase="Gigabit plan staff discount")
    item = ContentItem.objects.create(brief=brief)
    assert private_doc.pk not in {h.document_id for h in _Writer(item).hits}
    brief.references.set([private_doc])
    item = ContentItem.objects.get(pk=item.pk)
    assert {h.document_id for h in _Writer(item).hits} == {private_doc.pk}
