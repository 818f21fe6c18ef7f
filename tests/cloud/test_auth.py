"""Logins, tokens, logout, /me, and login rate limiting."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from cloud_sync.service.ratelimit import LoginLimiter, SlidingWindow
from cloud_sync.service.tables import Account, Token


async def _login(client: TestClient, login: str, password: str, **kw: Any) -> Any:
    return await client.post("/api/v1/sessions", json={"login": login, "password": password}, **kw)


async def test_login_issues_a_bearer_token_stored_only_as_its_hash(
    api: TestClient, seeded: Any, db: Any
) -> None:
    li = seeded.logins["li"]
    resp = await _login(api, li.login, li.password)
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == {"token", "expires_at", "role"}
    assert body["role"] == "resident"
    raw = base64.urlsafe_b64decode(body["token"] + "=")
    assert len(raw) == 32
    async with db.session() as s:
        stored = (await s.execute(select(Token.token_hash))).scalars().all()
    assert stored == [hashlib.sha256(body["token"].encode()).hexdigest()]
    assert body["token"] not in stored


async def test_wrong_password_and_unknown_login_look_the_same(api: TestClient, seeded: Any) -> None:
    wrong = await _login(api, seeded.logins["li"].login, "not-the-password")
    unknown = await _login(api, "nobody-here", "not-the-password")
    for resp in (wrong, unknown):
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "invalid_credentials"


async def test_disabled_account_cannot_log_in_and_its_tokens_stop(
    api: TestClient, seeded: Any, db: Any, login: Any
) -> None:
    headers = await login(api, "zhang")
    async with db.session() as s:
        await s.execute(
            update(Account)
            .where(Account.id == seeded.logins["zhang"].account_id)
            .values(disabled=True)
        )
        await s.commit()
    assert (await api.get("/api/v1/me", headers=headers)).status == 401
    z = seeded.logins["zhang"]
    assert (await _login(api, z.login, z.password)).status == 401


async def test_rate_limit_locks_the_login_even_for_the_right_password(
    make_api: Any, seeded: Any
) -> None:
    client: TestClient = await make_api(login_max_failures=3)
    li = seeded.logins["li"]
    for _ in range(3):
        assert (await _login(client, li.login, "wrong-password")).status == 401
    locked = await _login(client, li.login, li.password)
    assert locked.status == 429
    assert (await locked.json())["error"]["code"] == "rate_limited"
    assert 1 <= int(locked.headers["Retry-After"]) <= 300
    # another login from the same address is not locked by li's failures
    zhang = seeded.logins["zhang"]
    assert (await _login(client, zhang.login, zhang.password)).status == 201


async def test_rate_limit_per_client_address(make_api: Any, seeded: Any) -> None:
    client: TestClient = await make_api(login_max_failures_per_ip=4)
    for i in range(4):
        assert (await _login(client, f"guess-{i}", "wrong-password")).status == 401
    zhang = seeded.logins["zhang"]
    resp = await _login(client, zhang.login, zhang.password)
    assert resp.status == 429
    assert "Retry-After" in resp.headers


async def test_token_expires(make_api: Any, seeded: Any, login: Any, fake_clock: Any) -> None:
    clock = fake_clock
    client: TestClient = await make_api(clock=clock, token_ttl_s=60)
    headers = await login(client, "li")
    assert (await client.get("/api/v1/me", headers=headers)).status == 200
    clock.advance(59_999)
    assert (await client.get("/api/v1/me", headers=headers)).status == 200
    clock.advance(1)
    resp = await client.get("/api/v1/me", headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_logout_ends_the_session(api: TestClient, login: Any) -> None:
    headers = await login(api, "li")
    assert (await api.delete("/api/v1/sessions/current", headers=headers)).status == 204
    assert (await api.get("/api/v1/me", headers=headers)).status == 401
    assert (await api.delete("/api/v1/sessions/current", headers=headers)).status == 401


async def test_me_shows_units_and_masked_name(api: TestClient, login: Any, seeded: Any) -> None:
    resp = await api.get("/api/v1/me", headers=await login(api, "li"))
    assert resp.status == 200
    me = await resp.json()
    assert me == {"login": "li", "role": "resident", "units": ["1-101"], "name": "李**"}
    staff = await (await api.get("/api/v1/me", headers=await login(api, "engineer"))).json()
    assert staff == {"login": "engineer", "role": "engineer", "units": [], "name": None}


async def test_malformed_authorization_headers_are_401(api: TestClient) -> None:
    for value in ("", "Bearer", "Basic abc", "Bearer " + "a" * 500, "Bearer not-a-token"):
        resp = await api.get("/api/v1/me", headers={"Authorization": value})
        assert resp.status == 401, value


# -- the limiter on its own, with a hand-driven clock ---------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_sliding_window_blocks_after_n_failures_until_the_oldest_leaves() -> None:
    clock = _Clock()
    window = SlidingWindow(3, 60, clock=clock)
    for _ in range(2):
        window.record_failure("k")
        clock.t += 10
    assert window.retry_after("k") is None
    window.record_failure("k")  # failures at 1000, 1010, 1020
    assert window.retry_after("k") == 40  # the one at 1000 leaves at 1060
    clock.t = 1059.5
    assert window.retry_after("k") == 0.5
    clock.t = 1060
    assert window.retry_after("k") is None
    window.record_failure("k")  # now 1010, 1020, 1060: blocked until 1070
    assert window.retry_after("k") == 10


def test_sliding_window_memory_is_bounded() -> None:
    clock = _Clock()
    window = SlidingWindow(2, 60, max_keys=100, clock=clock)
    for i in range(1000):
        window.record_failure(f"k{i}")
    assert len(window._failures) <= 100


def test_success_resets_the_login_but_not_the_address() -> None:
    clock = _Clock()
    limiter = LoginLimiter(per_login=2, per_ip=3, window_s=60, clock=clock)
    limiter.failed("Li", "10.0.0.1")
    limiter.succeeded("li")
    limiter.failed("li", "10.0.0.1")
    assert limiter.retry_after("LI", "10.0.0.2") is None  # case-insensitive login key
    limiter.failed("other", "10.0.0.1")
    assert limiter.retry_after("someone", "10.0.0.1") == 60
