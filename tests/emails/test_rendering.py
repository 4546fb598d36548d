"""The emails: what each shows, hostile content kept inert, tokens intact, compiled once."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from digest.db import session_scope
from digest.email_backends import fill_tokens
from digest.ranking import rank_comparisons
from digest.rendering import (
    Entry,
    RenderedEmail,
    environment,
    mjml_render_count,
    render_alert,
    render_confirmation,
    render_goodbye,
    render_weekly,
    render_welcome,
)
from schema.models import Comparison, Subscriber
from tests.support.factories import NOW, comparison, published, store, tool
from tests.support.html import Page

# The fixed keys of old renders: no email rendered now may contain them.
LEGACY_KEYS = ("-name-", "-unsubscribe_url-", "-preferences_url-")
WELCOME_LINKS = {
    "unsubscribe_url": "https://p.example/unsubscribe/tok",
    "preferences_url": "https://p.example/preferences/tok",
}


def keys_of(email: RenderedEmail) -> tuple[str, str, str]:
    """The render's own placeholders: (name, unsubscribe URL, preferences URL)."""
    assert email.placeholders is not None
    keys = email.placeholders
    return keys.name, keys.unsubscribe_url, keys.preferences_url


def stored(session: Session, *datas: dict[str, Any]) -> list[Comparison]:
    store(session, *(published(data) for data in datas))
    slugs = [d["slug"] for d in datas]
    found = {c.slug: c for c in session.scalars(select(Comparison))}
    return [found[s] for s in slugs]


def weekly(session: Session, *datas: dict[str, Any], **kwargs: Any) -> RenderedEmail:
    ranked = rank_comparisons(stored(session, *datas))
    entries = [Entry(n, r.comparison, r.explanation) for n, r in enumerate(ranked, start=1)]
    return render_weekly(entries, **kwargs)


def both(email: RenderedEmail) -> tuple[str, str]:
    """The reader-visible text of the HTML part, and the plain-text part."""
    return Page(email.html).text, " ".join(email.text.split())


QUILLMATE = tool(
    "Quillmate",
    ship=3,
    skip=1,
    community=(173, 38),
    scores=[91, 70, 66, 30],
    tagline="Drafts grant proposals from your lab notebook",
    pricing="Free tier; Pro $12/mo",
    entry_price="Free",
    best_for="Labs with a grant deadline",
)
PARSEWELL = tool(
    "Parsewell",
    ship=2,
    skip=2,
    community=(0, 0),
    tagline="Extracts line items from scanned invoices",
    pricing="Usage-based, from $0.01 per page",
    entry_price="Paid",
    best_for="Finance teams drowning in receipts",
)


def quill_vs_parse(**extra: Any) -> dict[str, Any]:
    return comparison("quillmate-vs-parsewell", a=dict(QUILLMATE), b=dict(PARSEWELL), **extra)


# --- what a weekly entry shows ------------------------------------------------------------------


def test_entry_shows_rank_title_and_both_taglines_in_both_parts(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    for part in both(email):
        assert "#1" in part
        assert "Quillmate vs Parsewell" in part
        assert "Drafts grant proposals from your lab notebook" in part
        assert "Extracts line items from scanned invoices" in part


def test_entry_shows_panel_verdict_label_percentage_and_split(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    for part in both(email):
        assert "Ship · 3 ship / 1 skip · 75% panel ship" in part
        assert "Mixed · 2 ship / 2 skip · 50% panel ship" in part


def test_entry_shows_community_share_or_no_community_votes_yet(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    for part in both(email):
        assert "82% ship · 211 votes" in part
        assert "No community votes yet" in part


def test_entry_says_community_not_stated_when_the_page_did_not_say(pg: str) -> None:
    unstated = tool("Parsewell", ship=2, skip=2, community=None)
    with session_scope() as session:
        email = weekly(session, comparison("quillmate-vs-parsewell", b=unstated))
    for part in both(email):
        assert "Community votes not stated" in part
        assert "community not stated" in part


def test_entry_shows_entry_price_pricing_and_best_for(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    for part in both(email):
        assert "Free · Free tier; Pro $12/mo" in part
        assert "Paid · Usage-based, from $0.01 per page" in part
        assert "Labs with a grant deadline" in part
        assert "Finance teams drowning in receipts" in part


def test_best_for_that_repeats_the_tagline_is_shown_once(pg: str) -> None:
    same = dict(QUILLMATE, best_for=QUILLMATE["tagline"])
    with session_scope() as session:
        email = weekly(session, comparison("same", a=same, b=dict(PARSEWELL)))
    for part in both(email):
        assert part.count("Drafts grant proposals from your lab notebook") == 1


def test_entry_explains_its_rank_in_one_line(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    for part in both(email):
        assert "Quillmate: panel 3–1 ship · community 82 % of 211 votes" in part


def test_pull_quote_is_the_most_decisive_review_with_its_persona(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    for part in both(email):
        # 91 is the score furthest from 50 (Builder on Quillmate, see factories.tool)
        assert "“Builder on Quillmate: ship.”" in part
        assert "Builder on Quillmate · 91/100 · ship" in part
        assert "Skeptic on Quillmate: ship." not in part


def test_pull_quote_without_a_persona_is_attributed_to_the_panel(pg: str) -> None:
    condensed = dict(QUILLMATE, reviews=[{"text": "Unnamed but decisive take."}])
    with session_scope() as session:
        email = weekly(session, comparison("condensed", a=condensed, b=dict(PARSEWELL, reviews=[])))
    for part in both(email):
        assert "“Unnamed but decisive take.”" in part
        assert "— Panel on Quillmate" in part


def test_panel_figures_the_page_does_not_state_are_not_invented(pg: str) -> None:
    pct_only = dict(QUILLMATE, verdict=None, panel_ship=None, panel_skip=None, panel_ship_pct=100)
    with session_scope() as session:
        email = weekly(session, comparison("pct-only", a=pct_only, b=dict(PARSEWELL)))
    for part in both(email):
        assert "100% panel ship" in part
        assert "Ship · 100%" not in part and "4 ship" not in part


def test_link_to_the_comparison_carries_the_utm_tags(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    links = [h for h in Page(email.html).hrefs() if "/compare/" in h]
    assert links
    for link in links:
        parts = urlsplit(link)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
            "https://shiporskip.example/compare/quillmate-vs-parsewell"
        )
        assert parse_qs(parts.query) == {
            "utm_source": ["newsletter"],
            "utm_medium": ["email"],
            "utm_campaign": ["weekly-verdicts"],
            "utm_content": ["quillmate-vs-parsewell"],
        }
    assert links[0] in email.text


def test_link_is_built_from_the_site_url_when_the_comparison_has_none(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.db import reset_caches

    monkeypatch.setenv("DIGEST_SITE_URL", "https://verdicts.example/")
    reset_caches()
    with session_scope() as session:
        email = weekly(session, quill_vs_parse(url=None))
    assert any(
        h.startswith("https://verdicts.example/compare/quillmate-vs-parsewell?utm_source=")
        for h in Page(email.html).hrefs()
    )


def test_link_keeps_its_own_query_and_gains_the_utm_tags(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse(url="https://shiporskip.example/c/q?ref=home"))
    link = next(h for h in Page(email.html).hrefs() if "/c/q" in h)
    assert parse_qs(urlsplit(link).query) == {
        "ref": ["home"],
        "utm_source": ["newsletter"],
        "utm_medium": ["email"],
        "utm_campaign": ["weekly-verdicts"],
        "utm_content": ["quillmate-vs-parsewell"],
    }


def test_a_pages_own_utm_content_cannot_name_another_comparison(pg: str) -> None:
    """Click figures read the item from `utm_content`: the page's address cannot override it."""
    url = "https://shiporskip.example/c/q?utm_content=palettebird-vs-vectorine"
    with session_scope() as session:
        email = weekly(session, quill_vs_parse(url=url))
    link = next(h for h in Page(email.html).hrefs() if "/c/q" in h)
    assert parse_qs(urlsplit(link).query)["utm_content"] == ["quillmate-vs-parsewell"]


def test_clear_verdicts_and_split_decisions_are_told_apart(pg: str) -> None:
    clear = comparison(
        "clear", a=tool("Sortwell", ship=4, skip=0), b=tool("Agendrift", ship=1, skip=3)
    )
    split = comparison(
        "split", a=tool("Stackwise", ship=3, skip=1), b=tool("Gridkettle", ship=2, skip=2)
    )
    with session_scope() as session:
        email = weekly(session, clear, split)
    assert re.search(r"#1 +Sortwell vs Agendrift +\[Clear verdict\]", email.text)
    assert re.search(r"#2 +Stackwise vs Gridkettle +\[Split decision\]", email.text)
    html_text = Page(email.html).text
    assert "#1 · CLEAR VERDICT Sortwell vs Agendrift" in html_text
    assert "#2 · SPLIT DECISION Stackwise vs Gridkettle" in html_text
    # and by colour: each entry's card is edged green (clear) or amber (split)
    assert re.search(r"border-top:5px solid #15803d", email.html)
    assert re.search(r"border-top:5px solid #b45309", email.html)


def test_subject_and_preheader_come_from_the_top_items(pg: str) -> None:
    top = comparison(
        "top",
        a=tool("Sortwell", ship=4, skip=0, community=(90, 10)),
        b=tool("Agendrift", ship=1, skip=3),
    )
    second = comparison(
        "second", a=tool("Stackwise", ship=3, skip=1), b=tool("Gridkettle", ship=2, skip=2)
    )
    third = comparison(
        "third", a=tool("Palettebird", ship=2, skip=2), b=tool("Vectorine", ship=0, skip=4)
    )
    with session_scope() as session:
        email = weekly(session, third, second, top)
    assert email.subject == "This week's verdicts: Sortwell vs Agendrift + 2 more"
    assert email.preheader.startswith(
        "Sortwell (Ship) vs Agendrift (Skip), clear verdict; "
        "Stackwise (Ship) vs Gridkettle (Mixed), split decision"
    )
    assert len(email.preheader) <= 150
    assert email.preheader in Page(email.html).text  # the hidden preview text


def test_single_item_subject(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    assert email.subject == "This week's verdict: Quillmate vs Parsewell"


def test_segment_label_is_shown(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse(), segment_label="Writing Tools")
    for part in both(email):
        assert "Picked for you: Writing Tools" in part


# --- per-recipient tokens -----------------------------------------------------------------------


def test_footer_links_are_the_unsubscribe_and_preferences_tokens(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    _, unsubscribe, preferences = keys_of(email)
    hrefs = Page(email.html).hrefs()
    assert unsubscribe in hrefs and preferences in hrefs
    assert f"Unsubscribe: {unsubscribe}" in email.text
    assert f"Update preferences: {preferences}" in email.text


def test_footer_shows_the_postal_address(pg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from digest.db import reset_caches

    monkeypatch.setenv("DIGEST_POSTAL_ADDRESS", "Verdicts Ltd, 9 Test Lane, Sampleton")
    reset_caches()
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    for part in both(email):
        assert "Verdicts Ltd, 9 Test Lane, Sampleton" in part


def test_greeting_is_the_name_token(pg: str) -> None:
    with session_scope() as session:
        email = weekly(session, quill_vs_parse())
    name, _, _ = keys_of(email)
    for part in both(email):
        assert f"Hi {name}," in part


def test_tokens_survive_mjml_compilation_unchanged(pg: str) -> None:
    with session_scope() as session:
        comparisons = stored(session, quill_vs_parse())
    entries = [Entry(1, comparisons[0], "why")]
    email = render_weekly(entries)
    html = email.html
    NAME_TOKEN, UNSUBSCRIBE_TOKEN, PREFERENCES_TOKEN = TOKENS = keys_of(email)
    # what Jinja hands to MJML, and what MJML hands back
    source = (
        environment()
        .get_template("weekly.mjml.j2")
        .render(
            postal_address="x",
            site_url="https://s.example",
            public_url="https://p.example",
            unsubscribe_url=UNSUBSCRIBE_TOKEN,
            preferences_url=PREFERENCES_TOKEN,
            manage_links=True,
            subject="s",
            preheader="p",
            greeting_name=NAME_TOKEN,
            segment_label=None,
            entries=[],
            total=0,
            compact=[],
            more=0,
            archive_url="https://p.example/archive",
            view_online_url="https://p.example/archive",
        )
    )
    for token in TOKENS:
        assert source.count(token) >= 1
        assert html.count(token) == source.count(token), token
    assert f'href="{UNSUBSCRIBE_TOKEN}"' in html and f'href="{PREFERENCES_TOKEN}"' in html
    filled = fill_tokens(html, {UNSUBSCRIBE_TOKEN: "https://u.example/unsubscribe/abc"})
    assert "https://u.example/unsubscribe/abc" in Page(filled).hrefs()


# --- hostile content ----------------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


def test_markup_in_comparison_text_shows_as_text(pg: str) -> None:
    evil = tool("Evil<script>", tagline=HOSTILE, best_for=HOSTILE, pricing=HOSTILE)
    data = comparison("evil", a=evil, b=tool("Plain"), title=f"Evil {HOSTILE}")
    data["url"] = 'https://shiporskip.example/x"><img src=x onerror=alert(2)>'
    with session_scope() as session:
        email = weekly(session, data)
    page = Page(email.html)
    tags = {tag for tag, _ in page.elements}
    assert "script" not in tags and "img" not in tags
    assert not any(name.startswith("on") for _, attrs in page.elements for name in attrs)
    assert '<script>alert("x")</script>"><img src=x onerror=alert(1)>' in page.text
    assert "Evil<script>" in page.text  # the tool name, as text
    assert f"Evil {HOSTILE}" in page.text
    assert HOSTILE in email.text  # plain text shows it as written


def test_line_breaks_never_reach_the_subject_or_preheader(pg: str) -> None:
    data = comparison(
        "crlf", a=tool("Bcc\r\nInjected"), b=tool("Plain"), title="Top\r\nBcc: victim@example.com"
    )
    with session_scope() as session:
        email = weekly(session, data)
    for header in (email.subject, email.preheader):
        assert "\r" not in header and "\n" not in header
    assert email.subject == "This week's verdict: Top Bcc: victim@example.com"


def test_long_fields_are_cut_at_a_word_boundary(pg: str) -> None:
    words = " ".join(f"word{n}" for n in range(200))
    data = comparison("long", a=tool("Longwinded", tagline=words), b=tool("Plain"))
    with session_scope() as session:
        email = weekly(session, data)
    shown = re.search(r"Longwinded — (word0 [^\n]*)", email.text).group(1)
    assert shown.endswith("…") and len(shown) <= 160
    assert words.startswith(shown[:-1]) and words[len(shown) - 1] == " "
    assert shown in Page(email.html).text


# --- compile once -------------------------------------------------------------------------------


def test_render_weekly_compiles_mjml_exactly_once(pg: str) -> None:
    datas = [comparison(f"c{n}", a=tool(f"Alpha{n}"), b=tool(f"Beta{n}")) for n in range(8)]
    with session_scope() as session:
        comparisons = stored(session, *datas)
    entries = [Entry(n, c, "why") for n, c in enumerate(comparisons, start=1)]
    before = mjml_render_count()
    render_weekly(entries)
    assert mjml_render_count() - before == 1


def test_render_weekly_refuses_an_empty_digest() -> None:
    with pytest.raises(ValueError, match="entries"):
        render_weekly([])


CATEGORIES = ("Writing Tools", "Developer Tools", "Research Tools")


def test_renders_equal_segments_for_ten_thousand_recipients(pg: str) -> None:
    datas = [
        comparison(
            f"{category.split()[0].lower()}-{n}",
            a=tool(f"{category.split()[0]}A{n}", category=category),
            b=tool(f"{category.split()[0]}B{n}", category=category),
            category=category,
            published_at=NOW - timedelta(hours=n + 1),
        )
        for category in CATEGORIES
        for n in range(2)
    ]
    with session_scope() as session:
        comparisons = stored(session, *datas)
        session.execute(
            insert(Subscriber),
            [
                {
                    "email": f"reader{n}@example.com",
                    "status": "active",
                    "categories": [CATEGORIES[n % 3]],
                }
                for n in range(10_000)
            ],
        )
    ranked = rank_comparisons(comparisons)
    before = mjml_render_count()
    rendered: dict[str, RenderedEmail] = {}
    audience: Counter[str] = Counter()
    with session_scope() as session:
        last_id = 0
        while True:  # keyset pages of active subscribers, as a sender walks them
            page = session.execute(
                select(Subscriber.id, Subscriber.categories)
                .where(Subscriber.status == "active", Subscriber.id > last_id)
                .order_by(Subscriber.id)
                .limit(1000)
            ).all()
            if not page:
                break
            last_id = page[-1].id
            for _, categories in page:
                segment = ", ".join(sorted(categories))
                audience[segment] += 1
                if segment not in rendered:
                    items = [r for r in ranked if r.comparison.category in categories]
                    entries = [
                        Entry(n, r.comparison, r.explanation) for n, r in enumerate(items, 1)
                    ]
                    rendered[segment] = render_weekly(entries, segment_label=segment)
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 10_000
    assert sum(audience.values()) == 10_000
    assert len(rendered) == 3
    assert mjml_render_count() - before == len(rendered)
    for segment, email in rendered.items():
        titles = {c.title for c in comparisons if c.category == segment}
        others = {c.title for c in comparisons if c.category != segment}
        assert all(t in email.text for t in titles)
        assert not any(t in email.text for t in others)


# --- the other emails ---------------------------------------------------------------------------


def test_alert_shows_the_one_comparison_with_its_tokens(pg: str) -> None:
    with session_scope() as session:
        (item,) = stored(session, quill_vs_parse())
    before = mjml_render_count()
    email = render_alert(item, "Quillmate: panel 3–1 ship")
    assert mjml_render_count() - before == 1
    assert email.subject == "New verdict: Quillmate vs Parsewell"
    for part in both(email):
        assert "Quillmate vs Parsewell" in part
        assert "Ship · 3 ship / 1 skip · 75% panel ship" in part
        assert f"Hi {keys_of(email)[0]}," in part
    assert keys_of(email)[1] in Page(email.html).hrefs()
    assert any("utm_campaign=verdict-alert" in h for h in Page(email.html).hrefs())


def test_confirmation_carries_its_real_link_and_no_tokens(base_env: None) -> None:
    url = "https://verdicts.example/confirm/abc.DEF?x=1&y=2"
    email = render_confirmation(name="Ada", confirm_url=url)
    assert url in Page(email.html).hrefs()
    assert url in email.text
    for part in both(email):
        assert "Hi Ada," in part
    assert email.placeholders is None
    for token in LEGACY_KEYS:
        assert token not in email.html and token not in email.text


def test_confirmation_greets_without_the_markup_of_the_name_it_was_given(base_env: None) -> None:
    email = render_confirmation(name="<b>Eve</b>", confirm_url="https://v.example/confirm/t")
    page = Page(email.html)
    assert "b" not in {tag for tag, _ in page.elements}
    assert "Hi bEve/b," in page.text


def test_confirmation_refuses_a_non_http_link(base_env: None) -> None:
    with pytest.raises(ValueError, match="confirm_url"):
        render_confirmation(name=None, confirm_url="javascript:alert(1)")


def test_welcome_greets_by_name_and_links_the_preferences_and_unsubscribe_tokens(
    base_env: None,
) -> None:
    email = render_welcome(name="Ada", **WELCOME_LINKS)
    for part in both(email):
        assert "Hi Ada," in part
    hrefs = Page(email.html).hrefs()
    assert WELCOME_LINKS["unsubscribe_url"] in hrefs and WELCOME_LINKS["preferences_url"] in hrefs


def test_welcome_without_a_name_says_hi_there(base_env: None) -> None:
    for part in both(render_welcome(name=None, **WELCOME_LINKS)):
        assert "Hi there," in part


def test_goodbye_has_no_unsubscribe_link(base_env: None) -> None:
    email = render_goodbye(name="Ada")
    for part in both(email):
        assert "You're unsubscribed" in part and "Hi Ada," in part
    assert "unsubscribe" not in " ".join(Page(email.html).hrefs())
    for token in LEGACY_KEYS:
        assert token not in email.html and token not in email.text


@pytest.mark.parametrize(
    "render",
    [
        lambda: render_confirmation(name=None, confirm_url="https://v.example/c/t"),
        lambda: render_welcome(name=None, **WELCOME_LINKS),
        lambda: render_goodbye(name=None),
    ],
    ids=["confirmation", "welcome", "goodbye"],
)
def test_every_email_shares_the_layout(base_env: None, render: Any) -> None:
    email = render()
    for part in both(email):
        assert "WEEKLY AI TOOL VERDICTS" in part
        assert "1 Example Street" in part  # the default postal address
    assert "\n" not in email.subject
