"""The signup's fast path for plain addresses gives email-validator's answer or none at all.

`plain_address` skips the library for the common shape of address; these properties hold it
to the library's normalised form on every address it answers, near-valid ones built to sit on
the library's rules (lengths, hyphens, dots, special-use names, case) and arbitrary strings.
"""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.signup_fields import InvalidField, normalise_email, plain_address


def library(address: str) -> str | None:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


# Mostly the plain shape, with its edges within reach: long parts, hyphens and dots in odd
# places, case, special-use and numeric top-level names; sometimes characters outside it.
atoms = st.text("aZ09_+-", min_size=1, max_size=24)
local_parts = st.one_of(
    st.lists(atoms, min_size=1, max_size=4).map(".".join),
    st.lists(atoms, min_size=1, max_size=4).map(".".join),
    st.text("aZ09_+-.!#'~\"ü ", min_size=0, max_size=70),
)
labels = st.one_of(
    st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,70}[a-zA-Z0-9])?", fullmatch=True),
    st.text("aZz09-", min_size=1, max_size=66),
    st.text("aZ-_ü.", max_size=8),
)
top_levels = st.one_of(
    st.sampled_from(["test", "local", "localhost", "invalid", "onion", "arpa", "com", "c0m"]),
    st.from_regex(r"[a-zA-Z]{1,66}", fullmatch=True),
    st.text("abcXYZ1-", min_size=0, max_size=66),
)
near_valid = st.builds(
    lambda local, inner, tld, upper: (lambda address: address.upper() if upper else address)(
        f"{local}@{'.'.join([*inner, tld])}"
    ),
    local_parts,
    st.lists(labels, min_size=1, max_size=4),
    top_levels,
    st.booleans(),
)


@settings(max_examples=3000)
@given(near_valid)
def test_an_address_near_the_rules_gets_the_librarys_answer_or_goes_to_it(address: str) -> None:
    answer = plain_address(address)
    assert answer is None or answer == library(address)


@settings(max_examples=2000)
@given(st.text(min_size=0, max_size=300))
def test_any_string_answered_by_the_fast_path_is_one_the_library_accepts_alike(
    address: str,
) -> None:
    answer = plain_address(address)
    assert answer is None or answer == library(address)


@pytest.mark.parametrize(
    ("address", "normalised"),
    [
        ("reader@example.com", "reader@example.com"),
        ("Reader.One+news@Mail.Example.ORG", "Reader.One+news@mail.example.org"),
        ("a_b-c@sub-domain.example.co", "a_b-c@sub-domain.example.co"),
        (f"{'l' * 64}@{'d' * 63}.example.com", f"{'l' * 64}@{'d' * 63}.example.com"),
    ],
)
def test_a_plain_address_takes_the_fast_path_to_the_librarys_form(
    address: str, normalised: str
) -> None:
    assert library(address) == normalised
    assert plain_address(address) == normalised


@pytest.mark.parametrize(
    "address",
    [
        "a..b@example.com",  # the library refuses it
        "reader@example.test",  # special-use name
        "reader@xn--bcher-kva.example",  # punycode: the library decodes it
        "reader@ab--cd.example",  # two letters, two dashes
        f"{'l' * 65}@example.com",  # local part over 64
        f"reader@{'d' * 64}.example.com",  # label over 63
        "rëader@example.com",  # not ASCII
        '"quoted"@example.com',
        "reader@example.c0m",  # digits in the top-level domain
    ],
)
def test_an_address_near_a_rule_is_left_to_the_library(address: str) -> None:
    assert plain_address(address) is None


def test_a_refused_address_still_names_the_email_field() -> None:
    with pytest.raises(InvalidField) as raised:
        normalise_email("a..b@example.com")
    assert raised.value.field == "email"
    assert "two periods" in raised.value.message
