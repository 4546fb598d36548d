"""The events' one idempotency key (`digest.webhook_events.dedupe_key`), as properties."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from digest.webhook_events import dedupe_key

texts = st.text(max_size=40)
maybe_texts = st.none() | texts
parts = st.tuples(
    st.text(min_size=1, max_size=40),  # a message id
    maybe_texts,
    st.sampled_from(["delivered", "open", "click", "bounce"]),
    st.integers(min_value=0, max_value=2**40),
    maybe_texts,
    maybe_texts,
)


@given(parts)
def test_a_key_is_32_hex_digits_a_uuid_column_accepts(fields) -> None:
    key = dedupe_key(*fields)
    assert key is not None and len(key) == 32 and set(key) <= set(string.hexdigits.lower())


@given(parts, st.text(max_size=40), st.text(max_size=40))
def test_a_redelivery_under_a_new_event_id_has_the_same_key(fields, first_id, second_id) -> None:
    assert dedupe_key(*fields[:5], first_id) == dedupe_key(*fields[:5], second_id)


@given(parts, parts)
def test_events_that_differ_in_what_happened_have_different_keys(a, b) -> None:
    """Message, address (any case), event, second and URL together name one event."""
    same = (a[0], (a[1] or "").lower(), a[2], a[3], a[4] or "") == (
        b[0],
        (b[1] or "").lower(),
        b[2],
        b[3],
        b[4] or "",
    )
    assert (dedupe_key(*a) == dedupe_key(*b)) == same


@given(maybe_texts, st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_without_a_message_id_the_event_id_is_the_key(email, first_id, second_id) -> None:
    assert (
        dedupe_key(None, email, "open", 1, None, first_id)
        == dedupe_key("", email, "open", 1, None, second_id)
    ) == (first_id == second_id)


@given(parts, st.text(min_size=1, max_size=40))
def test_an_event_id_key_never_meets_a_content_key(fields, event_id) -> None:
    assert dedupe_key(*fields) != dedupe_key(None, None, fields[2], fields[3], None, event_id)


@given(maybe_texts, st.integers(min_value=0, max_value=2**40), maybe_texts)
def test_an_event_with_neither_id_has_no_key(email, ts, url) -> None:
    assert dedupe_key(None, email, "open", ts, url, None) is None
    assert dedupe_key("", email, "open", ts, url, "") is None


@given(st.lists(st.sampled_from(["a", "\x1f", "b"]), min_size=2, max_size=6))
def test_a_separator_inside_a_field_cannot_make_two_events_meet(pieces) -> None:
    """Moving text across a field boundary (a U+001F inside a field) changes the key."""
    text = "".join(pieces)
    cut = len(text) // 2
    first = dedupe_key(text[:cut] or "m", text[cut:], "open", 1, None)
    moved = dedupe_key((text[:cut] or "m") + "\x1f" + text[cut:], "", "open", 1, None)
    assert first != moved
