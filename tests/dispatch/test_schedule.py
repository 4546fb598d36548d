"""The weekly schedule: a local-time cron, one wave per timezone, each slot fired exactly once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from bench.procs import wait_for
from digest.cron import CronError, last_slot, next_slot, parse_cron
from digest.db import new_session, session_scope
from digest.settings import Settings
from digest.weekly import fire_waves
from schema.models import DeliveryBatch, Digest, DigestItem, Subscriber
from tests.support.planning_worker import Launch
from tests.support.recipients import (
    MONDAY,
    add_subscribers,
    count,
    deliveries,
    every_recipient,
    publish,
)
from tests.support.sendgrid_server import FakeSendGrid

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WEEKLY = parse_cron("0 9 * * 1")
WEEK = [
    ("quillmate-vs-parsewell", "Writing"),
    ("palettebird-vs-vectorine", "Design"),
    ("latticeflow-vs-cobaltcode", "Developer Tools"),
]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the cron expression --------------------------------------------------------------------


def slots(expression: str, after: str, count: int, zone: ZoneInfo = UTC) -> list[str]:
    """The next `count` slots of `expression` after `after`, as local ISO times."""
    cron, found, moment = parse_cron(expression), [], at(after)
    for _ in range(count):
        moment = next_slot(cron, moment, zone)
        found.append(moment.isoformat())
    return found


def test_cron_reads_minute_hour_and_weekday() -> None:
    assert slots("0 9 * * 1", "2026-11-24T00:00:00+00:00", 2) == [
        "2026-11-30T09:00:00+00:00",
        "2026-12-07T09:00:00+00:00",
    ]


def test_cron_reads_lists_ranges_steps_and_names() -> None:
    found = slots("*/15 8-10 * jan,jul mon-fri", "2026-12-31T23:00:00+00:00", 13)
    assert found[:2] == ["2027-01-01T08:00:00+00:00", "2027-01-01T08:15:00+00:00"]
    assert found[11] == "2027-01-01T10:45:00+00:00"
    assert found[12] == "2027-01-04T08:00:00+00:00"  # Saturday and Sunday skipped


def test_sunday_is_both_0_and_7() -> None:
    after = "2026-11-23T00:00:00+00:00"
    assert slots("0 9 * * 7", after, 1) == slots("0 9 * * 0", after, 1)
    assert slots("0 9 * * sun", after, 1) == ["2026-11-29T09:00:00+00:00"]


def test_weekly_shorthand_is_sunday_midnight() -> None:
    assert slots("@weekly", "2026-11-23T00:00:00+00:00", 1) == ["2026-11-29T00:00:00+00:00"]


@pytest.mark.parametrize(
    ("expression", "field"),
    [("0 24 * * 1", "hour"), ("60 9 * * 1", "minute"), ("0 9 * * funday", "day of week")],
)
def test_bad_cron_names_the_field(expression: str, field: str) -> None:
    with pytest.raises(CronError, match=field):
        parse_cron(expression)


def test_cron_needs_five_fields() -> None:
    with pytest.raises(CronError, match="5 fields"):
        parse_cron("0 9 * *")


def test_cron_with_a_seconds_field_is_refused() -> None:
    with pytest.raises(CronError, match="5 fields"):
        parse_cron("0 0 9 * * 1")


def test_settings_refuse_a_bad_weekly_cron() -> None:
    with pytest.raises(ValidationError, match="hour"):
        Settings(weekly_cron="0 25 * * 1")


def test_day_of_month_and_weekday_together_match_either() -> None:
    # the 1st of the month, or any Monday (Vixie cron)
    assert slots("0 9 1 * 1", "2026-11-30T12:00:00+00:00", 2) == [
        "2026-12-01T09:00:00+00:00",  # a Tuesday
        "2026-12-07T09:00:00+00:00",  # a Monday
    ]


# --- daylight saving (America/New_York: 2026-03-08 02:00 → 03:00, 2026-11-01 02:00 → 01:00) ----


def test_slot_in_the_skipped_spring_forward_hour_fires_once_right_after_the_gap() -> None:
    assert slots("30 2 * * *", "2026-03-07T12:00:00-05:00", 3, NEW_YORK) == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_slot_in_the_repeated_fall_back_hour_fires_once_at_its_first_occurrence() -> None:
    assert slots("30 1 * * *", "2026-10-31T12:00:00-04:00", 3, NEW_YORK) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]


def test_last_slot_on_a_fall_back_day_is_the_first_occurrence() -> None:
    cron = parse_cron("30 1 * * *")
    after_both = at("2026-11-01T07:00:00+00:00")  # 02:00 EST, after the second 01:30
    assert last_slot(cron, after_both, NEW_YORK).isoformat() == "2026-11-01T01:30:00-04:00"


def test_last_slot_is_the_latest_at_or_before_now() -> None:
    assert last_slot(WEEKLY, at("2026-11-23T09:00:00+00:00"), UTC) == at(
        "2026-11-23T09:00:00+00:00"
    )
    assert last_slot(WEEKLY, at("2026-11-23T08:59:59+00:00"), UTC) == at(
        "2026-11-16T09:00:00+00:00"
    )


def test_slot_is_nine_local_time_on_both_sides_of_a_dst_change() -> None:
    winter = last_slot(WEEKLY, at("2026-03-24T12:00:00+00:00"), BERLIN)
    summer = last_slot(WEEKLY, at("2026-03-31T12:00:00+00:00"), BERLIN)
    assert winter.isoformat() == "2026-03-23T09:00:00+01:00"
    assert summer.isoformat() == "2026-03-30T09:00:00+02:00"


def test_next_slot_is_strictly_after() -> None:
    monday = at("2026-11-23T09:00:00+00:00")
    assert next_slot(WEEKLY, monday, UTC) == monday + timedelta(days=7)


# --- firing waves on PostgreSQL ----------------------------------------------------------------


@pytest.fixture
def readers(pg: str) -> dict[str, list[str]]:
    """Weekly subscribers in three timezones and without one (DIGEST_TIMEZONE, UTC), and the
    comparisons of the week before Monday 2026-11-23."""
    with session_scope() as session:
        publish(session, WEEK, at=MONDAY - timedelta(hours=12))
        return {
            "Asia/Tokyo": add_subscribers(session, 3, prefix="tokyo", timezone="Asia/Tokyo"),
            "Europe/Berlin": add_subscribers(session, 4, prefix="berlin", timezone="Europe/Berlin"),
            "America/New_York": add_subscribers(
                session, 2, prefix="newyork", timezone="America/New_York"
            ),
            "UTC": add_subscribers(session, 5, prefix="nozone")
            + add_subscribers(session, 1, prefix="oddzone", timezone="Mars/Olympus_Mons"),
        }


def tick(now: datetime) -> list[int]:
    with session_scope() as session:
        return [report.digest_id for report in fire_waves(session, now)]


def wave_of(digest_id: int) -> tuple[str, list[str]]:
    with session_scope() as session:
        digest = session.get(Digest, digest_id)
        assert digest is not None
        emails = sorted(e for _, _, e in deliveries(session, digest_id))
        return digest.slot_key or "", emails


def test_each_timezone_gets_its_wave_at_nine_local(readers: dict[str, list[str]]) -> None:
    fired = {
        "Asia/Tokyo": tick(at("2026-11-23T00:00:30+00:00")),  # 09:00 in Tokyo
        "Europe/Berlin": tick(at("2026-11-23T08:00:30+00:00")),  # 09:00 in Berlin (CET)
        "UTC": tick(at("2026-11-23T09:00:30+00:00")),
        "America/New_York": tick(at("2026-11-23T14:00:30+00:00")),  # 09:00 in New York (EST)
    }
    for zone, ids in fired.items():
        assert len(ids) == 1, zone
        key, emails = wave_of(ids[0])
        assert key.startswith("2026-11-23T09:00:00") and key.endswith("@" + zone)
        assert emails == sorted(readers[zone]), zone


def test_every_wave_of_an_edition_carries_the_same_items(readers: dict[str, list[str]]) -> None:
    first = tick(at("2026-11-23T00:00:30+00:00"))
    later = tick(at("2026-11-23T14:00:30+00:00"))  # Berlin, UTC and New York at once
    assert len(first) == 1 and len(later) == 3
    with session_scope() as session:
        items = {
            digest_id: list(
                session.scalars(
                    select(DigestItem.comparison_id)
                    .where(DigestItem.digest_id == digest_id)
                    .order_by(DigestItem.rank)
                )
            )
            for digest_id in first + later
        }
        windows = {
            (d.window_start, d.window_end)
            for d in session.scalars(select(Digest).where(Digest.id.in_(first + later)))
        }
        renders = [session.get(Digest, i).renders for i in later]  # type: ignore[union-attr]
    assert len({tuple(v) for v in items.values()}) == 1 and len(items[first[0]]) == 3
    assert len(windows) == 1
    assert renders == [0, 0, 0]  # the first wave's rendering is reused


def test_a_reader_who_moves_timezone_gets_the_edition_once(
    readers: dict[str, list[str]],
) -> None:
    tick(at("2026-11-23T00:00:30+00:00"))  # Tokyo's wave
    with session_scope() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == readers["Asia/Tokyo"][0])
            .values(timezone="America/New_York")
        )
    [new_york] = tick(at("2026-11-23T14:00:30+00:00"))[-1:]
    key, emails = wave_of(new_york)
    assert key.endswith("@America/New_York")
    assert emails == sorted(readers["America/New_York"])
    with session_scope() as session:
        everyone = every_recipient(session)
    assert len(everyone) == len(set(everyone))


def test_two_beats_at_once_fire_a_slot_once(readers: dict[str, list[str]]) -> None:
    now = at("2026-11-23T09:00:30+00:00")  # Tokyo, Berlin and UTC are all due
    start = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def beat() -> None:
        session = new_session()
        try:
            start.wait()
            fired = [report.digest_id for report in fire_waves(session, now)]
            session.commit()
            results.append(fired)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(len(r) for r in results) == [0, 3]
    with session_scope() as session:
        assert count(session, Digest) == 3
        everyone = every_recipient(session)
    assert len(everyone) == len(set(everyone)) == 3 + 4 + 6


def test_the_next_tick_fires_nothing_new(readers: dict[str, list[str]]) -> None:
    assert len(tick(at("2026-11-23T00:00:30+00:00"))) == 1
    assert tick(at("2026-11-23T00:01:30+00:00")) == []
    assert tick(at("2026-11-23T00:00:30+00:00")) == []


def test_a_missed_slot_fires_late_once(readers: dict[str, list[str]]) -> None:
    # beat was down on Monday morning; it comes back at 15:00 UTC
    late = tick(at("2026-11-23T15:00:00+00:00"))
    assert len(late) == 4
    assert tick(at("2026-11-23T15:01:00+00:00")) == []
    with session_scope() as session:
        assert len(every_recipient(session)) == 3 + 4 + 2 + 6


def test_a_slot_older_than_the_grace_period_is_skipped(
    readers: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.db import reset_caches

    monkeypatch.setenv("DIGEST_WEEKLY_GRACE_HOURS", "6")
    reset_caches()
    # Monday 19:00 UTC: the Tokyo, Berlin and UTC slots are older than 6 hours, New York's is not
    fired = tick(at("2026-11-23T19:00:00+00:00"))
    assert [wave_of(i)[0].rsplit("@", 1)[1] for i in fired] == ["America/New_York"]


def test_a_week_with_no_new_comparisons_sends_nothing_and_says_so(
    readers: dict[str, list[str]],
) -> None:
    assert len(tick(at("2026-11-23T15:00:00+00:00"))) == 4
    next_week = tick(at("2026-11-30T15:00:00+00:00"))
    assert len(next_week) == 4
    with session_scope() as session:
        digests = session.scalars(select(Digest).where(Digest.id.in_(next_week))).all()
        assert {d.status for d in digests} == {"cancelled"}
        assert all("no new comparisons" in (d.status_reason or "") for d in digests)
        assert count(session, DeliveryBatch) == 4  # last week's waves only
        assert len(every_recipient(session)) == 3 + 4 + 2 + 6


def test_next_weeks_window_starts_where_this_weeks_ended(readers: dict[str, list[str]]) -> None:
    tick(at("2026-11-23T15:00:00+00:00"))
    with session_scope() as session:
        publish(session, [("tallyhive-vs-minutely", "Productivity")], at=at("2026-11-27T12:00Z"))
    next_week = tick(at("2026-11-30T00:00:30+00:00"))  # Tokyo leads the new edition
    with session_scope() as session:
        digest = session.get(Digest, next_week[0])
        assert digest is not None
        assert digest.window_start == at("2026-11-23T00:00:00+00:00")  # last week's Tokyo slot
        titles = [i.comparison.title for i in digest.items]
    assert titles == ["Tallyhive vs Minutely"]


# --- two real beat processes, one worker, the fake SendGrid ------------------------------------


def test_two_beat_processes_fire_a_slot_once(launch: Launch, sendgrid_env: FakeSendGrid) -> None:
    now = datetime.now(ZoneInfo("UTC"))
    slot = now - timedelta(minutes=5)  # a daily slot five minutes ago: due, within the grace
    env = {"DIGEST_WEEKLY_CRON": f"{slot.minute} {slot.hour} * * *", "DIGEST_BEAT_INTERVAL": "1"}
    with session_scope() as session:
        publish(session, WEEK, at=now - timedelta(hours=2))
        emails = add_subscribers(session, 1500)
    launch("worker", "planner", **env)
    beats = [launch("beat", name, **env) for name in ("beat-a", "beat-b")]
    wait_for(lambda: sendgrid_env.recipients >= 1500, 120, what="the weekly digest to be sent")
    wait_for(
        lambda: all(b.log_tail(400).count("digest.fire_weekly_slots") >= 4 for b in beats),
        60,
        what="both beats to keep ticking",
    )
    with session_scope() as session:
        [digest] = session.scalars(select(Digest)).all()
        assert digest.slot_key == f"{slot:%Y-%m-%dT%H:%M}:00+00:00@UTC"
        assert digest.status == "sent"
    assert sendgrid_env.counts == dict.fromkeys(emails, 1)
