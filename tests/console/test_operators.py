"""Operator accounts and the audit log: the domain and `digest operators add|list|remove`."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from digest import audit
from digest.cli import app
from digest.db import session_scope
from digest.operators import (
    OperatorError,
    create_operator,
    list_operators,
    remove_operator,
    verify_login,
)
from schema.models import Operator
from tests.support.console_fixtures import PASSWORD

runner = CliRunner()


def test_the_password_is_stored_as_an_argon2id_hash_never_as_text(pg: str) -> None:
    with session_scope() as session:
        create_operator(session, "Ops@Example.com", PASSWORD)
    with session_scope() as session:
        stored = session.scalar(select(Operator))
        assert stored is not None
        assert stored.email == "ops@example.com"
        assert stored.password_hash.startswith("$argon2id$")
        assert PASSWORD not in stored.password_hash


def test_right_password_signs_in_wrong_and_unknown_do_not(pg: str) -> None:
    with session_scope() as session:
        create_operator(session, "ops@example.com", PASSWORD)
    with session_scope() as session:
        assert verify_login(session, "OPS@example.com", PASSWORD) is not None
        assert verify_login(session, "ops@example.com", PASSWORD + "x") is None
        assert verify_login(session, "nobody@example.com", PASSWORD) is None
        assert verify_login(session, "ops@example.com", "x" * 100_000) is None


def test_an_unknown_account_costs_the_same_argon2_work_as_a_wrong_password(pg: str) -> None:
    """No timing oracle: the unknown address is checked against a dummy hash."""
    with session_scope() as session:
        create_operator(session, "ops@example.com", PASSWORD)
        verify_login(session, "warm@example.com", "warm-up")  # the dummy hash is made once

    def cost(email: str) -> float:
        started = time.perf_counter()
        for _ in range(3):
            with session_scope() as session:
                verify_login(session, email, "wrong password here")
        return time.perf_counter() - started

    wrong, unknown = cost("ops@example.com"), cost("nobody@example.com")
    assert unknown > wrong * 0.5
    assert wrong > unknown * 0.5


def test_short_passwords_and_duplicate_accounts_are_refused(pg: str) -> None:
    with session_scope() as session, pytest.raises(OperatorError, match="at least"):
        create_operator(session, "ops@example.com", "short")
    with session_scope() as session:
        create_operator(session, "ops@example.com", PASSWORD)
    with session_scope() as session, pytest.raises(OperatorError, match="already"):
        create_operator(session, "OPS@example.com", PASSWORD)


def test_cli_adds_lists_and_removes_operators_and_audits_each_change(pg: str) -> None:
    added = runner.invoke(
        app, ["operators", "add", "you@example.com", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["operators", "list"])
    assert "you@example.com" in listed.output
    removed = runner.invoke(app, ["operators", "remove", "you@example.com"])
    assert removed.exit_code == 0, removed.output
    again = runner.invoke(app, ["operators", "remove", "you@example.com"])
    assert again.exit_code == 1
    with session_scope() as session:
        assert list_operators(session) == []
        actions = [(e.actor, e.action, e.target) for e in audit.recent(session).entries]
    assert actions == [
        ("cli", "operator.remove", "you@example.com"),
        ("cli", "operator.add", "you@example.com"),
    ]


def test_cli_prompts_for_the_password_twice_without_echo(pg: str) -> None:
    added = runner.invoke(
        app, ["operators", "add", "you@example.com"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert added.exit_code == 0, added.output
    assert PASSWORD not in added.output
    with session_scope() as session:
        assert verify_login(session, "you@example.com", PASSWORD) is not None


def test_cli_refuses_a_short_password_with_exit_1(pg: str) -> None:
    added = runner.invoke(
        app, ["operators", "add", "you@example.com", "--password-stdin"], input="x\n"
    )
    assert added.exit_code == 1
    with session_scope() as session:
        assert not remove_operator(session, "you@example.com")


def test_audit_pages_are_newest_first(pg: str) -> None:
    with session_scope() as session:
        for n in range(7):
            audit.record(session, "ops@example.com", f"action.{n}")
    with session_scope() as session:
        first = audit.recent(session, page=1, per_page=5)
        second = audit.recent(session, page=2, per_page=5)
    assert [e.action for e in first.entries] == [f"action.{n}" for n in (6, 5, 4, 3, 2)]
    assert [e.action for e in second.entries] == ["action.1", "action.0"]
    assert (first.pages, first.total) == (2, 7)


def test_operators_work_on_the_embedded_default_too(sqlite: str) -> None:
    added = runner.invoke(
        app, ["operators", "add", "you@example.com", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert added.exit_code == 0, added.output
    with session_scope() as session:
        assert verify_login(session, "you@example.com", PASSWORD) is not None
    assert runner.invoke(app, ["operators", "remove", "you@example.com"]).exit_code == 0
    with session_scope() as session:
        assert list_operators(session) == []
