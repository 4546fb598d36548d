"""Rate limits (Redis), CORS allowlist and the configuration they read."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from digest.db import reset_caches
from digest.settings import Settings
from tests.support.subscriber_fixtures import count_subscribers


def app_client() -> TestClient:
    from digest.web.app import create_app

    return TestClient(create_app(), follow_redirects=False)


@pytest.fixture
def limits(pg: str, redis_url: str, eager_tasks: None, monkeypatch: pytest.MonkeyPatch):
    """Small limits so that a test can reach them."""

    def apply(per_ip: str = "1000/minute", per_email: str = "1000/hour") -> TestClient:
        monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_IP", per_ip)
        monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_EMAIL", per_email)
        reset_caches()
        return app_client()

    return apply


def test_per_ip_limit_answers_429_with_retry_after(limits) -> None:
    client = limits(per_ip="3/minute")
    answers = [
        client.post("/subscribe", json={"email": f"reader{i}@example.com"}).status_code
        for i in range(4)
    ]
    assert answers == [202, 202, 202, 429]
    refused = client.post("/subscribe", json={"email": "reader9@example.com"})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert count_subscribers() == 3


def test_per_ip_limit_on_a_form_post_shows_a_page_with_retry_after(limits) -> None:
    client = limits(per_ip="1/minute")
    client.post("/subscribe", data={"email": "reader1@example.com"})
    refused = client.post("/subscribe", data={"email": "reader2@example.com"})
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("text/html")
    assert int(refused.headers["retry-after"]) >= 1


def test_per_address_limit_answers_429_whatever_the_case_of_the_address(limits) -> None:
    client = limits(per_email="2/hour")
    answers = [
        client.post("/subscribe", json={"email": email}).status_code
        for email in ("ada@example.com", "ADA@example.com", "Ada@Example.com")
    ]
    assert answers == [202, 202, 429]
    assert (
        1
        <= int(client.post("/subscribe", json={"email": "ada@example.com"}).headers["retry-after"])
        <= 3600
    )
    assert client.post("/subscribe", json={"email": "bo@example.com"}).status_code == 202


def test_limits_are_shared_by_every_web_worker_through_redis(limits) -> None:
    first = limits(per_ip="2/minute")
    second = app_client()  # another process would build its own app the same way
    assert first.post("/subscribe", json={"email": "a@example.com"}).status_code == 202
    assert second.post("/subscribe", json={"email": "b@example.com"}).status_code == 202
    assert first.post("/subscribe", json={"email": "c@example.com"}).status_code == 429


def test_honeypot_hits_count_against_the_per_ip_limit(limits) -> None:
    client = limits(per_ip="2/minute")
    for _ in range(2):
        client.post("/subscribe", data={"email": "bot@example.com", "website": "x"})
    assert client.post("/subscribe", data={"email": "human@example.com"}).status_code == 429


def test_cors_allows_an_allowlisted_origin(
    pg: str, redis_url: str, eager_tasks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_CORS_ORIGINS", "https://blog.example, https://shop.example")
    reset_caches()
    client = app_client()
    preflight = client.options(
        "/subscribe",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    response = client.post(
        "/subscribe", json={"email": "ada@example.com"}, headers={"Origin": "https://blog.example"}
    )
    assert response.status_code == 202
    assert response.headers["access-control-allow-origin"] == "https://blog.example"


def test_cors_ignores_other_origins(
    pg: str, redis_url: str, eager_tasks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_CORS_ORIGINS", '["https://blog.example"]')
    reset_caches()
    client = app_client()
    response = client.post(
        "/subscribe", json={"email": "ada@example.com"}, headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/subscribe",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400


def test_signups_pass_every_request_guard_in_the_same_order_as_other_requests(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.web.app import create_app

    monkeypatch.setenv("DIGEST_CORS_ORIGINS", "https://blog.example")
    reset_caches()
    app = create_app()
    guards, layer = [], app.signup_path  # POST /subscribe skips FastAPI's layers, not these
    while hasattr(layer, "app"):
        guards.append(type(layer))
        layer = layer.app
    assert guards == [middleware.cls for middleware in app.user_middleware]
    assert [cls.__name__ for cls in guards] == [
        "CORSMiddleware",
        "BearerGate",
        "BodySizeLimit",
        "JsonDepthLimit",
    ]


def test_rate_limit_setting_with_bad_syntax_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIGEST_SUBSCRIBE_RATE_PER_IP", "plenty")
    with pytest.raises(ValueError, match="subscribe_rate_per_ip"):
        Settings()


def test_origin_settings_accept_json_or_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_CORS_ORIGINS", '["https://a.example"]')
    monkeypatch.setenv("DIGEST_REDIRECT_ORIGINS", "https://b.example/, https://c.example")
    settings = Settings()
    assert settings.cors_origins == ["https://a.example"]
    assert settings.redirect_origins == ["https://b.example", "https://c.example"]


def test_batched_hits_count_like_hits_one_at_a_time(redis_url: str) -> None:
    from digest.ratelimit import RateLimiter, parse_limits

    limiter = RateLimiter(redis_url)
    limits = parse_limits("2/minute;3/hour")
    answers = limiter.hit_each(limits, "scope", ["a", "a", "b", "a"])
    assert [bool(a) for a in answers] == [False, False, False, True]
    assert 1 <= answers[3].retry_after <= 60  # type: ignore[union-attr]
    # the library reads the same counters: "a" is full, "b" has one more this minute
    assert not limiter.strategy.test(limits[0], "scope", "a")
    assert limiter.strategy.test(limits[0], "scope", "b")
    assert limiter.hit(limits, "scope", "b") is None
    assert limiter.hit(limits, "scope", "b") is not None


def test_a_batch_that_does_not_fit_whole_counts_nothing(redis_url: str) -> None:
    from digest.ratelimit import RateLimiter, parse_limits

    limiter = RateLimiter(redis_url)
    limits = parse_limits("5/minute;3/hour")
    assert not limiter.hit_all_or_none(limits, "scope", "ip", 4)  # the hour limit refuses
    assert limiter.fits(limits, "scope", "ip", 3)  # nothing was counted, not even per minute
    assert limiter.hit_all_or_none(limits, "scope", "ip", 3)
    assert not limiter.fits(limits, "scope", "ip", 1)


def test_a_json_signup_is_answered_with_the_bytes_a_json_response_would_carry(
    pg: str, redis_url: str, eager_tasks: None
) -> None:
    from fastapi.responses import JSONResponse

    response = app_client().post("/subscribe", json={"email": "ada@example.com"})
    expected = JSONResponse({"status": "pending"}, status_code=202)
    assert response.status_code == 202
    assert response.content == expected.body
    assert response.headers["content-type"] == expected.headers["content-type"]
