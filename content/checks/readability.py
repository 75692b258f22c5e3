"""Readability: Flesch reading ease (textstat, in the languages it has coefficients for),
sentence length (sentences split with NLTK's Punkt) and paragraph length."""

from __future__ import annotations

from nltk.tokenize.punkt import PunktSentenceTokenizer

from content.checks.config import READABILITY_LANGUAGES, Status
from content.checks.dictionary import ensure_cmudict
from content.checks.reading import Article, Report, num

# Untrained Punkt needs no data files. It splits after abbreviations ("e.g."), which can only
# make sentences look shorter: the sentence-length check errs towards passing.
_punkt = PunktSentenceTokenizer()


def readability(a: Article, report: Report) -> None:
    add, config, stats = report.add, report.config, a.stats
    paragraphs = [p for p in a.doc.paragraphs if stats.lexicon_count(p)]
    if not paragraphs:
        for check_id in ("flesch_reading_ease", "sentence_length", "paragraph_length"):
            add(check_id, "warn", "There are no paragraphs to measure.", None)
        return

    if a.lang not in READABILITY_LANGUAGES:
        reason = f"Flesch reading ease is not measured for {a.lang or 'unknown'}."
        add("flesch_reading_ease", "warn", reason, None)
    else:
        if a.lang == "en":  # only English syllables come from the CMU dictionary
            ensure_cmudict()
        # textstat counts sentences by their final punctuation: end each paragraph (list items
        # often have none) with a full stop so two items don't read as one long sentence.
        text = "\n\n".join(p if p[-1] in ".!?…" else p + "." for p in paragraphs)
        score = round(stats.flesch_reading_ease(text), 1)
        ok, bad = num(config.flesch_pass_above), num(config.flesch_fail_below)
        if score > config.flesch_pass_above:
            add("flesch_reading_ease", "pass", f"Flesch reading ease is {num(score)}, above {ok}.", score)
        else:
            status: Status = "warn" if score >= config.flesch_fail_below else "fail"
            hard = f"below {bad} is hard to read" if status == "fail" else f"aim for above {ok}"
            reason = f"Flesch reading ease is {num(score)}; {hard}: use shorter sentences and words."
            add("flesch_reading_ease", status, reason, score)

    sentence_words = [n for p in paragraphs for s in _punkt.tokenize(p) if (n := stats.lexicon_count(s))]
    limit = config.long_sentence_words
    long_pct = round(sum(n > limit for n in sentence_words) / len(sentence_words) * 100, 1)
    warn_pct = num(config.long_sentences_warn_pct)
    measured = f"{num(long_pct)} % of sentences have more than {limit} words"
    if long_pct <= config.long_sentences_warn_pct:
        add("sentence_length", "pass", f"{measured}, within the {warn_pct} % maximum.", long_pct)
    else:
        status = "warn" if long_pct <= config.long_sentences_fail_pct else "fail"
        add("sentence_length", status, f"{measured}; keep it to {warn_pct} % or less.", long_pct)

    lengths = [stats.lexicon_count(p) for p in paragraphs]
    longest, most = max(lengths), config.paragraph_warn_words
    too_long = sum(n > most for n in lengths)
    if not too_long:
        add("paragraph_length", "pass", f"The longest paragraph has {longest} words, within {most}.", longest)
    else:
        status = "warn" if longest <= config.paragraph_fail_words else "fail"
        reason = f"Paragraphs over {most} words: {too_long} (the longest has {longest}); split them."
        add("paragraph_length", status, reason, longest)
