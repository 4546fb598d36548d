"""The per-recipient link signing of a batch (digest.tokens.RecipientLinks) is itsdangerous's.

A batch signs two tokens per recipient with a hand-rolled HMAC (the hot path of sending); the
links must stay byte-for-byte what itsdangerous issues and reads, or old emails' links break.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from digest import tokens
from digest.settings import get_settings


@pytest.mark.parametrize("subscriber_id", [1, 42, 999_999, 2**40])
def test_batch_links_are_the_tokens_itsdangerous_issues(subscriber_id: int) -> None:
    secret = get_settings().signing_key
    unsubscribe, preferences, reader = tokens.recipient_links(7).links(subscriber_id, reader=True)
    manage = URLSafeSerializer(secret, salt="digest.manage").dumps(subscriber_id)
    vote = URLSafeSerializer(secret, salt="digest.vote").dumps([7, subscriber_id])
    assert unsubscribe.endswith(f"/unsubscribe/{manage}")
    assert preferences.endswith(f"/preferences/{manage}")
    assert reader == vote


def test_batch_links_read_back_as_the_subscriber_and_digest() -> None:
    unsubscribe, _, reader = tokens.recipient_links(3).links(1234, reader=True)
    assert tokens.read_manage_token(unsubscribe.rsplit("/", 1)[1]) == 1234
    assert tokens.read_reader_token(reader) == tokens.ReaderClaim(3, 1234)


def test_batch_links_without_vote_links_sign_no_reader_token() -> None:
    assert tokens.recipient_links(3).links(1234, reader=False)[2] == ""


def test_a_tampered_batch_link_is_refused() -> None:
    unsubscribe, _, _ = tokens.recipient_links(3).links(1234, reader=False)
    token = unsubscribe.rsplit("/", 1)[1]
    with pytest.raises(tokens.InvalidToken):
        tokens.read_manage_token(token[:-1] + ("A" if token[-1] != "A" else "B"))


@settings(max_examples=300)
@given(
    digest_id=st.integers(min_value=1, max_value=2**53),
    subscriber_id=st.integers(min_value=1, max_value=2**53),
)
def test_any_ids_sign_tokens_itsdangerous_reads_back(digest_id: int, subscriber_id: int) -> None:
    """The written-out HMAC of `RecipientLinks.links`, across the id range: itsdangerous reads
    both tokens back as the ids, and issues the same bytes whenever it would not compress them
    (it zlib-compresses a payload that shrinks, e.g. `[3124999,3124999]`; ours never does, and
    its reader accepts both forms)."""
    secret = get_settings().signing_key
    manage_signer = URLSafeSerializer(secret, salt="digest.manage")
    vote_signer = URLSafeSerializer(secret, salt="digest.vote")
    unsubscribe, _, reader = tokens.recipient_links(digest_id).links(subscriber_id, reader=True)
    manage = unsubscribe.rsplit("/", 1)[1]
    assert manage_signer.loads(manage) == subscriber_id
    assert vote_signer.loads(reader) == [digest_id, subscriber_id]
    for ours, theirs in (
        (manage, manage_signer.dumps(subscriber_id)),
        (reader, vote_signer.dumps([digest_id, subscriber_id])),
    ):
        assert ours == theirs or theirs.startswith(".")
