"""A model's answer let through sentence by sentence, each checked before anyone reads it.

For callers that show the model's own words to a customer (the chat with CHAT_ANSWER_STYLE
"model"): the stream is cut into sentences, each is checked against the sources the model was
given and the customer's words (answers/support.check), and only supported or neutral ones are
passed on; unsupported ones are kept in the checks (stored, auditable) but never shown. The
caller falls back to quoting the sources (answers/extractive.py) when nothing supported is left.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from asgiref.sync import sync_to_async

from answers.ending import ends_sentence
from answers.generate import Answer
from answers.support import check, remembering
from answers.verification import Embed, SentenceCheck, split_sentences
from inference.services import get_embedder


async def checked_sentences(answer: Answer, question: str) -> AsyncGenerator[SentenceCheck, None]:
    """Each sentence of `answer` as it completes, with its verdict. A sentence is complete when
    the text after it has started (or the answer ended): "3.5" or "e.g. this" never splits."""
    pending = ""
    embed = remembering(get_embedder().embed)  # the sources' sentences embedded once per answer
    async for piece in answer.stream():
        pending += piece
        sentences = split_sentences(pending)
        if len(sentences) < 2:
            continue
        for sentence in sentences[:-1]:
            yield await _check(sentence, answer, question, embed)
        # What remains starts at the last (unfinished) sentence.
        pending = pending[pending.rfind(sentences[-1]) :]
    usage = answer.usage
    cut = (
        answer.failure is not None or answer.looped or (usage is not None and usage.finish_reason == "length")
    )
    if cut and not ends_sentence(pending):
        return  # stopped mid-sentence (a failure, or the token cap): the fragment is not shown
    for sentence in split_sentences(pending):
        yield await _check(sentence, answer, question, embed)


async def _check(sentence: str, answer: Answer, question: str, embed: Embed) -> SentenceCheck:
    # On the one sync thread, as retrieval's search is: the embedder's tokenizer is not made for
    # concurrent calls from several threads.
    verification = await sync_to_async(check)(sentence, answer.prompt.sources, question=question, embed=embed)
    checks = verification.sentences
    if len(checks) == 1:
        return checks[0]
    # The splitter agreed with itself on the whole text, so this is rare: judge it as one.
    worst = min(checks, key=lambda c: (c.verdict != "unsupported", c.score))
    return SentenceCheck(sentence, worst.verdict, worst.score, worst.chunk, worst.evidence, worst.unknown)
