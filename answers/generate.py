"""The second half of the answer path: the model writes, the reader gets what is safe.

`Answer` runs one generation over a composed prompt (answers/grounding.py) under the watch
(answers/fallback.py: a stalled or endless model is cut off), through the output guard
(answers/guard.py: no images, no links the sources do not name, no recitation of the
instructions) and the restorer (core/redaction.py: placeholders back to the customer's values).
Iterate `stream()` for the text as it becomes safe to send; `complete` and `complete_all` run
answers to the end, several at once so the engine decodes them in one batch (about 5x the tokens/s
of one stream at 8, benchmarks/RESULTS.md). A model failure (busy, failed, stalled, too slow)
never raises out of an answer: it ends with `failure` set, and the caller falls back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from answers.confidence import source_relevance
from answers.ending import repeats, tidy
from answers.fallback import watched
from answers.grounding import Prompt
from answers.guard import AnswerGuard, source_links
from answers.provenance import Provenance, citation_items, retrieved_records
from core.redaction import StreamRestorer
from inference.base import GenerationParams, InferenceError, TextGenerator, Usage

log = logging.getLogger(__name__)


def _stall() -> float:
    return float(settings.CHAT_MODEL_STALL_SECONDS)


def _timeout() -> float:
    return float(settings.CHAT_ANSWER_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class Spec:
    """How to generate: the instructions (the guard stops their recitation), the template
    version recorded with the output, the length, the sampling and the watch's limits."""

    instructions: str
    template: str
    max_tokens: int
    fresh: bool = False  # sample (a new seed) so a regenerated part differs; else greedy, repeatable
    stall: float = field(default_factory=_stall)
    timeout: float = field(default_factory=_timeout)

    @classmethod
    def background(cls, instructions: str, template: str, max_tokens: int, *, fresh: bool = False) -> Spec:
        """For work nobody waits for at a screen (a desk draft, an article part): the watch's
        limits wider than a visitor's, since such work may queue behind chat traffic and runs
        longer, but a worker still never hangs. ANSWER_BACKGROUND_STALL_SECONDS (default 120)
        and ANSWER_BACKGROUND_TIMEOUT_SECONDS (default 600)."""
        return cls(
            instructions,
            template,
            max_tokens,
            fresh=fresh,
            stall=float(settings.ANSWER_BACKGROUND_STALL_SECONDS),
            timeout=float(settings.ANSWER_BACKGROUND_TIMEOUT_SECONDS),
        )

    def params(self) -> GenerationParams:
        return GenerationParams(
            max_tokens=self.max_tokens,
            temperature=0.8 if self.fresh else 0.0,
            top_p=0.95 if self.fresh else 1.0,
            seed=secrets.randbelow(2**31) if self.fresh else None,
            repetition_penalty=settings.CHAT_REPETITION_PENALTY,
        )


class Answer:
    """One generation over `prompt`, guarded and restored (see the module docstring)."""

    def __init__(self, generator: TextGenerator, prompt: Prompt, spec: Spec) -> None:
        self.prompt, self.spec = prompt, spec
        generation = generator.stream(prompt.messages, spec.params())
        assert generation.deltas is not None  # set by the backend with the generation
        generation.deltas = watched(generation.deltas, stall=spec.stall, timeout=spec.timeout)
        self.generation = generation
        self.guard = AnswerGuard(spec.instructions, links=source_links(prompt.sources))
        self.restorer = StreamRestorer(prompt.mapping)
        self.parts: list[str] = []
        self.failure: InferenceError | None = None
        self.finished = False  # ran to its end (or to the guard's cut)
        self.looped = False  # stopped for repeating itself (answers/ending.py)

    @property
    def text(self) -> str:
        """What the reader got, so far; once finished, up to its last whole sentence when the
        model was stopped at the cap or for looping (answers/ending.tidy)."""
        raw = "".join(self.parts)
        if not self.finished:
            return raw.strip()
        usage = self.generation.usage
        return tidy(raw, cut=self.looped or (usage is not None and usage.finish_reason == "length"))

    @property
    def usage(self) -> Usage | None:
        return self.generation.usage

    @property
    def leaked(self) -> bool:
        """The model started reciting its instructions (that part was replaced by a refusal)."""
        return self.guard.leaked

    async def stream(self) -> AsyncGenerator[str, None]:
        """The text as it becomes safe to send. A model failure ends it with `failure` set;
        closing it early (the reader left) closes the generation, which frees the model."""
        try:
            async for delta in self.generation:
                safe = self.guard.feed(self.restorer.feed(delta))
                if safe:
                    self.parts.append(safe)
                    yield safe
                if self.guard.leaked:
                    break  # nothing more is sent; the finally stops the model
                if safe and repeats("".join(self.parts)):
                    self.looped = True
                    break  # a loop: the model stops here, `text` ends before it
            tail = self.guard.feed(self.restorer.flush()) + self.guard.flush()
            if tail:
                self.parts.append(tail)
                yield tail
            self.finished = True
        except InferenceError as exc:
            self.failure = exc
            log.warning("event=answer_failed code=%s streamed_chars=%s", exc.code, sum(map(len, self.parts)))
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the model (a no-op once the generation has ended)."""
        deltas = self.generation.deltas
        aclose = getattr(deltas, "aclose", None)
        if aclose is not None:
            await aclose()

    async def run(self) -> Answer:
        """The whole answer."""
        async for _ in self.stream():
            pass
        return self

    def provenance(self) -> Provenance:
        return Provenance(
            model_key=self.usage.model_version if self.usage else None,
            prompt_template=self.spec.template,
            retrieved=retrieved_records(self.prompt.sources, self.prompt.excluded),
        )

    def citations(self) -> list[dict[str, Any]]:
        return citation_items(self.prompt.sources)

    @property
    def relevance(self) -> float:
        """The best similarity of a chunk the model was given (0.0: none was)."""
        return source_relevance(self.prompt.sources)


async def complete_all(generator: TextGenerator, requests: list[tuple[Prompt, Spec]]) -> list[Answer]:
    """Every answer to its end, all at once (the engine batches them); in the order asked."""
    answers = [Answer(generator, prompt, spec) for prompt, spec in requests]
    return list(await asyncio.gather(*(answer.run() for answer in answers)))


async def complete(generator: TextGenerator, prompt: Prompt, spec: Spec) -> Answer:
    return await Answer(generator, prompt, spec).run()
