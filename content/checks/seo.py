"""The keyphrase checks (title, introduction, slug, subheadings, meta description, image alt
text, density) and the length checks (meta description, SEO title, text)."""

from __future__ import annotations

from slugify import slugify

from content.checks.config import Status
from content.checks.reading import Article, Report, keyphrase_pattern, num


def keyphrase_checks(a: Article, keyphrase: str, report: Report) -> None:
    add, config = report.add, report.config
    pattern = keyphrase_pattern(keyphrase)
    quoted = f'"{keyphrase.strip()}"'

    def placement(check_id: str, where: str, text: str | None, missing: Status = "fail") -> None:
        # Both sides of the slug comparison are slugified: "Café Menüs" matches "cafe-menus".
        match = keyphrase_pattern(slugify(keyphrase).replace("-", " ")) if where == "slug" else pattern
        if match is None:
            add(check_id, "fail", f"No keyphrase is set, so the {where} can't be checked for it.", None)
        elif not text:
            add(check_id, missing, f"There is no {where} to contain the keyphrase {quoted}.", False)
        elif match.search(text):
            add(check_id, "pass", f"The {where} contains the keyphrase {quoted}.", True)
        else:
            add(check_id, missing, f"The {where} does not contain the keyphrase {quoted}; add it.", False)

    def count(texts: list[str], check_id: str, what: str, missing: Status) -> None:
        found = sum(bool(pattern and pattern.search(text)) for text in texts)
        if pattern is None:
            add(check_id, "fail", f"No keyphrase is set, so {what} can't be checked for it.", None)
        elif found:
            add(
                check_id,
                "pass",
                f"{what.capitalize()} with the keyphrase {quoted}: {found} of {len(texts)}.",
                found,
            )
        else:
            reason = f"None of the {len(texts)} {what} has the keyphrase {quoted}; add it to one."
            add(check_id, missing, reason, 0)

    placement("keyphrase_in_seo_title", "SEO title", a.meta_title)
    placement("keyphrase_in_introduction", "first paragraph", a.doc.intro)
    placement("keyphrase_in_slug", "slug", slugify(a.slug), missing="warn")  # Yoast: orange

    subheadings = [text for level, text in a.doc.headings if level in (2, 3)]
    if subheadings or pattern is None:
        count(subheadings, "keyphrase_in_subheadings", "H2/H3 subheadings", "fail")
    else:
        add("keyphrase_in_subheadings", "fail", "The body has no H2 or H3 subheadings; add some.", 0)

    placement("keyphrase_in_meta_description", "meta description", a.meta_description)

    # Images are optional in the studio: with none, there is no alt text to improve, so pass.
    if a.image_alts:
        count(a.image_alts, "keyphrase_in_image_alt", "image alt texts", "warn")  # Yoast: orange
    else:
        add("keyphrase_in_image_alt", "pass", "There are no images, so no alt text to check.", None)

    # Density = uses of the keyphrase x words in the keyphrase / words in the text x 100, the
    # text being everything but the H1 and words counted by textstat. Compared rounded to
    # 0.01, as shown.
    low, high = num(config.density_min_pct), num(config.density_max_pct)
    if pattern is None:
        add("keyphrase_density", "fail", "No keyphrase is set, so its density can't be measured.", None)
    elif not a.words:
        reason = f"The text is empty; keyphrase density must be {low} % to {high} %."
        add("keyphrase_density", "fail", reason, 0.0)
    else:
        uses = len(pattern.findall(a.doc.text))
        density = round(uses * a.stats.lexicon_count(keyphrase) / a.words * 100, 2)
        times = f"{uses} use{'' if uses == 1 else 's'}"
        measured = f"Keyphrase density is {num(density)} % ({times} in {a.words} words)"
        if config.density_min_pct <= density <= config.density_max_pct:
            add("keyphrase_density", "pass", f"{measured}, within {low} % to {high} %.", density)
        else:
            add("keyphrase_density", "fail", f"{measured}; keep it between {low} % and {high} %.", density)


def length_checks(a: Article, report: Report) -> None:
    add, config = report.add, report.config
    n, lo, hi = len(a.meta_description), config.meta_description_min_chars, config.meta_description_max_chars
    check_id = "meta_description_length"
    if not n:
        add(check_id, "fail", f"There is no meta description; write {lo} to {hi} characters.", 0)
    elif n > hi:
        reason = f"The meta description has {n} characters; keep it to {hi} so search results show all of it."
        add(check_id, "fail", reason, n)
    elif n < lo:
        reason = f"The meta description has {n} characters; use {lo} to {hi} to fill the search snippet."
        add(check_id, "warn", reason, n)
    else:
        add(check_id, "pass", f"The meta description has {n} characters, within {lo} to {hi}.", n)

    n, hi = len(a.meta_title), config.seo_title_max_chars
    if not n:
        add("seo_title_length", "fail", f"There is no SEO title; write one of up to {hi} characters.", 0)
    elif n > hi:
        reason = f"The SEO title has {n} characters; search results cut titles over {hi} characters."
        add("seo_title_length", "warn", reason, n)
    else:
        add("seo_title_length", "pass", f"The SEO title has {n} characters, within the {hi} that show.", n)

    words, least = a.words, config.min_words
    if words < least:
        add("text_length", "fail", f"The text has {words} words; write at least {least}.", words)
    else:
        add("text_length", "pass", f"The text has {words} words, at least {least}.", words)
