"""Uploaded lists imported by a worker (digest/list_imports.py): chunk by chunk, each chunk
committed with its checkpoint, so a worker that dies resumes exactly, two runners import once,
beat restarts a stalled import, and a file that cannot be read on ends `failed`, saying where."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from digest import list_imports, subscriber_lists
from digest.db import session_scope
from digest.list_imports import create_import, run_import
from schema.models import ListImport, Subscriber

HEADER = "email,name,categories,frequency,timezone\n"
ROWS = [f"r{n}@example.com,R{n},,weekly,\n" for n in range(9)]
ROWS.insert(4, "broken,,,,\n")  # line 6
BODY = (HEADER + "".join(ROWS)).encode()


def stored(body: bytes = BODY, pieces: int = 3) -> int:
    size = max(1, len(body) // pieces)
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    with session_scope() as session:
        return create_import(session, "ops@example.com", "list.csv", False, parts)


def state(import_id: int) -> tuple[str, int, int, int, int, int]:
    with session_scope() as session:
        row = session.get(ListImport, import_id)
        assert row is not None
        return row.status, row.lines_done, row.added, row.existing, row.suppressed, row.bad


def subscribers() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscriber_lists, "CHUNK", 3)


def test_a_stored_upload_imports_whole_across_its_parts(pg: str, small_chunks: None) -> None:
    import_id = stored(pieces=7)
    assert run_import(import_id) == "done"
    assert state(import_id) == ("done", 11, 9, 0, 0, 1)
    assert subscribers() == 9


def test_a_worker_dying_mid_file_resumes_after_the_last_committed_line(
    pg: str, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_id = stored()
    real_store, calls = list_imports._store, []

    def dies_on_the_third_chunk(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("worker killed")
        return real_store(*args)

    monkeypatch.setattr(list_imports, "_store", dies_on_the_third_chunk)
    with pytest.raises(RuntimeError):
        run_import(import_id)
    status, done, *_ = state(import_id)
    assert status == "running" and done == 7  # two chunks of lines 2-4 and 5-7 committed
    monkeypatch.setattr(list_imports, "_store", real_store)
    assert run_import(import_id) == "done"
    assert state(import_id) == ("done", 11, 9, 0, 0, 1)  # every row counted once
    assert subscribers() == 9


def test_two_runners_for_one_import_import_it_once(
    pg: str, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_id = stored()
    real_store, nested = list_imports._store, []

    def another_runner_overtakes(*args):  # type: ignore[no-untyped-def]
        if not nested:
            nested.append("running")
            nested[0] = run_import(import_id)  # a duplicate task runs the whole import
        return real_store(*args)

    monkeypatch.setattr(list_imports, "_store", another_runner_overtakes)
    assert run_import(import_id) is None  # the one behind stops at its first chunk
    assert nested == ["done"]
    assert state(import_id) == ("done", 11, 9, 0, 0, 1)


def test_a_finished_import_run_again_does_nothing(pg: str) -> None:
    import_id = stored()
    run_import(import_id)
    assert run_import(import_id) is None
    assert state(import_id)[2] == 9


def test_beat_queues_a_stalled_import_again_and_it_finishes(pg: str, eager_tasks: None) -> None:
    from workers import tasks

    import_id = stored()  # queued; its task never ran (the broker was down at upload)
    assert tasks.requeue_stalled_imports() == []  # fresh: left alone
    with session_scope() as session:
        old = datetime.now(UTC) - timedelta(hours=1)
        session.execute(update(ListImport).values(updated_at=old))
    assert tasks.requeue_stalled_imports() == [import_id]
    assert state(import_id)[0] == "done"


def test_a_file_that_cannot_be_read_on_ends_failed_saying_where(pg: str) -> None:
    body = (HEADER + "a@example.com,,,,\n" + 'b@example.com,"' + "x" * 200_000 + '",,,\n').encode()
    import_id = stored(body)
    assert run_import(import_id) == "failed"
    with session_scope() as session:
        row = session.get(ListImport, import_id)
        assert row is not None and "line 3" in (row.failure or "")
        assert "field larger than field limit" in (row.failure or "")
    assert subscribers() == 1  # what came before was imported, and the page says so
