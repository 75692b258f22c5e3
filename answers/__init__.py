"""The one grounded-answer path. Chat answers (assistant/chat/actions.py), desk drafts
(assistant/desk/drafting.py) and article parts (content/generation.py) all go through it:

1. retrieve (grounding.retrieve): a pinned answer when the caller asks for one (pinned.py), else
   retrieval.search, and the passages screened (guard.screen_hits: instructions aimed at the
   model are kept out and recorded);
2. compose (grounding.compose): the customer's words redacted (prompts.redact_turns,
   core.redaction) and the prompt fitted to the token budget (prompts.fit_answer_messages);
3. generate (generate.Answer, complete, complete_all): streamed or completed through
   inference.services.get_text_generator (several at once: the engine batches them), under the
   watch (fallback.watched: stall and timeout), through the output guard (guard.AnswerGuard,
   links only to the sources) and the restorer (core.redaction.StreamRestorer);
4. verify (support.check, verification.verify): each sentence's numbers, codes and names must be
   in the sources or the customer's words (a sentence's numbers and codes in one passage
   together) and a source sentence must say the same (embedding similarity); the chat shows only
   verified text: the best source sentences (extractive.py, CHAT_ANSWER_STYLE "quote") or the
   model's sentences that pass (verified.py, "model"); drafts and articles store every
   sentence's verdict for the agent's and the editor's review;
5. record (provenance.Provenance, support.records): model version, prompt template version, the
   chunks with their scores, and each sentence's support (verdict, chunk, score);
6. fall back: a failure ends the answer with `failure` set; the caller falls back its own way
   (fallback.fallback_text and a person in the chat, a flagged empty draft on the desk, a failed
   step in the studio).

Confidence (confidence.py) is read from the same path. answers/ imports only retrieval/,
inference/ and core/ (the import contracts in pyproject.toml); callers observe it for their own
metrics.
"""
