"""A channel-layer outage, for real: a private Redis (never the machine's shared one) is killed under a
running Daphne, then started again on the same port.

The gateway never needs the layer: its open socket goes on turn after turn, with its context, and new
gateway sockets open during the outage. A browser socket is told `switchboard.live` paused, keeps
chatting, and is caught up (`switchboard.history`) then told resumed once Redis is back. No socket
closes. The log says so in one warning when the outage starts and one when it ends, no traceback.

It runs on either suite (SQLite or PostgreSQL: Daphne uses the test database) with its own Redis; it is
skipped only when `redis-server` is not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connection as db_connection
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.live import database_url, serving_daphne
from tests.private_services import PrivateRedis
from tests.worlds import simulator_world

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]

OUTAGE_STARTS = "Channel layer unavailable"
OUTAGE_ENDS = "Channel layer back"
WAIT = 30.0  # generous: two cores shared with other test runs


@pytest.fixture
def private_redis(tmp_path: Path):
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


@contextmanager
def serving(redis: PrivateRedis, log: Path):
    """`python -m sessions_app.serve` on the test database and `redis`, logging in text to `log`."""
    env = {**os.environ, "DATABASE_URL": database_url(db_connection.settings_dict), "REDIS_URL": redis.url,
           "DJANGO_SETTINGS_MODULE": "project.settings", "SWITCHBOARD_LOG_FORMAT": "text"}
    with log.open("wb") as sink:
        with serving_daphne(env, stdout=sink, stderr=subprocess.STDOUT) as (port, process):
            yield port, process


@pytest.fixture
def outage_world(transactional_db, private_redis, simulator_process, tmp_path: Path):
    world = simulator_world(simulator_process.url)
    log = tmp_path / "daphne.log"
    with serving(private_redis, log) as (port, process):
        yield {**world, "port": port, "log": log, "redis": private_redis, "process": process}


@pytest.fixture
def second_server(outage_world, tmp_path: Path):
    """Another Daphne process on the same database and Redis: its port."""
    with serving(outage_world["redis"], tmp_path / "daphne-2.log") as (port, _):
        yield port


def issue_token() -> tuple[int, str]:
    from django.contrib.auth import get_user_model

    from sessions_app.models import ApiToken

    token, raw = ApiToken.issue(user=get_user_model().objects.get(username="alice"), name="revoked during the outage")
    return token.pk, raw


def revoke_token(pk: int) -> None:
    from sessions_app.models import ApiToken

    ApiToken.objects.get(pk=pk).revoke()


def gateway(world):
    return connect(f"ws://127.0.0.1:{world['port']}/v1/responses", open_timeout=WAIT,
                   additional_headers={"Authorization": f"Bearer {world['token']}"})


def browser_socket(world):
    port = world["port"]
    return connect(f"ws://127.0.0.1:{port}/ws/conversations/{world['conversation']}/", open_timeout=WAIT,
                   origin=f"http://127.0.0.1:{port}", additional_headers={"Cookie": f"sessionid={world['session']}"})


async def receive_until(ws, done) -> list[dict]:
    seen = []
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        seen.append(event)
        if done(event):
            return seen


def ended(event: dict) -> bool:
    return event["type"] in ("response.completed", "response.failed", "error")


async def gateway_turn(ws, text: str, previous: str | None) -> tuple[str, str]:
    """One create on an open gateway socket: (the new response id, its text)."""
    create = {"type": "response.create", "model": "gpt-5.5", "input": text, "store": False}
    if previous:
        create["previous_response_id"] = previous
    await ws.send(json.dumps(create))
    events = await receive_until(ws, ended)
    assert events[-1]["type"] == "response.completed", events[-1]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    return events[-1]["response"]["id"], text


async def browser_turn(ws, text: str, previous: str | None = None) -> list[dict]:
    create = {"type": "response.create", "input": text}
    if previous:
        create["previous_response_id"] = previous
    await ws.send(json.dumps(create))
    events = await receive_until(ws, ended)
    assert events[-1]["type"] == "response.completed", events[-1]
    return events


def live(state: str):
    return lambda event: event["type"] == "switchboard.live" and event["state"] == state


async def test_a_redis_outage_closes_no_socket_and_pauses_only_the_live_view(outage_world):
    world = outage_world
    async with gateway(world) as agent, browser_socket(world) as page:
        await receive_until(page, lambda e: e["type"] == "switchboard.status")
        previous = None
        for text in ("remember: heron", "one", "two"):
            previous, _ = await gateway_turn(agent, text, previous)
        remembered = (await browser_turn(page, "remember: otter"))[-1]["response"]["id"]

        world["redis"].kill()

        # The browser is told its live view paused; the page's own conversation goes on.
        await receive_until(page, live("paused"))
        paused_text = "".join(e["delta"] for e in await browser_turn(page, "what did I ask you to remember?",
                                                                  remembered)
                              if e["type"] == "response.output_text.delta")
        assert "You asked me to remember: otter." in paused_text

        # The open gateway socket carries on, context intact.
        for text in ("four", "five"):
            previous, _ = await gateway_turn(agent, text, previous)
        previous, said = await gateway_turn(agent, "what did I ask you to remember?", previous)
        assert "You asked me to remember: heron." in said

        # New sockets open and work during the outage.
        for _ in range(3):
            async with gateway(world) as fresh:
                await gateway_turn(fresh, "hello during the outage", None)
        # A bad token is still refused (the throttle counts in this process while the shared cache is down).
        with pytest.raises(InvalidStatus) as refused:
            async with gateway({**world, "token": "sb_" + "x" * 43}):
                pass
        assert refused.value.response.status_code == 403
        async with browser_socket(world) as late:
            attached = await receive_until(late, live("paused"))
            assert attached[0]["type"] == "switchboard.history"

        # Revocation needs no layer (it polls the database): a token revoked now still closes its socket.
        token_pk, raw = await sync_to_async(issue_token)()
        async with gateway({**world, "token": raw}) as doomed:
            await gateway_turn(doomed, "hello before revocation", None)
            await sync_to_async(revoke_token)(token_pk)
            events = await receive_until(doomed, lambda e: e["type"] == "error")
            assert events[-1]["error"]["code"] == "credentials_revoked"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(doomed.recv(), WAIT)
            assert closed.value.rcvd.code == 4401

        world["redis"].start()  # same port, empty: every group is forgotten

        caught_up = await receive_until(page, live("resumed"))
        assert caught_up[-2]["type"] == "switchboard.history"  # caught up from the records, then resumed
        previous, _ = await gateway_turn(agent, "seven", previous)
        await browser_turn(page, "after the outage")
        async with gateway(world) as fresh:
            await gateway_turn(fresh, "hello after the outage", None)

    logged = world["log"].read_text()
    assert logged.count(OUTAGE_STARTS) == 1, logged
    assert logged.count(OUTAGE_ENDS) == 1, logged
    assert logged.count("Shared cache unavailable") == 1 and logged.count("Shared cache back") == 1, logged
    assert "Traceback" not in logged, logged
    assert world["process"].poll() is None


async def test_viewers_on_another_process_see_it_live_again_after_the_outage(outage_world, second_server):
    """Two Daphne processes: the viewer's process re-joins the group Redis forgot, and sees the next turn live."""
    world = outage_world
    async with browser_socket(world) as driver, browser_socket({**world, "port": second_server}) as viewer:
        for ws in (driver, viewer):
            await receive_until(ws, lambda e: e["type"] == "switchboard.status")
        previous = (await browser_turn(driver, "before"))[-1]["response"]["id"]
        await receive_until(viewer, lambda e: e["type"] == "response.completed")

        world["redis"].kill()
        await receive_until(viewer, live("paused"))
        previous = (await browser_turn(driver, "during", previous))[-1]["response"]["id"]  # missed live...
        world["redis"].start()
        caught_up = await receive_until(viewer, live("resumed"))
        history = [e for e in caught_up if e["type"] == "switchboard.history"][-1]
        assert len(history["responses"]) == 2  # ...and caught up from the records

        # Live again once the driver's process has asked the layer who watches (each process finds
        # Redis back on its own, within its retry delay): a few turns at most.
        for _ in range(6):
            previous = (await browser_turn(driver, "after", previous))[-1]["response"]["id"]
            try:
                await asyncio.wait_for(receive_until(viewer, completed(previous)), 5.0)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the viewer never saw a turn live again")


def completed(response_id: str):
    return lambda event: event["type"] == "response.completed" and event["response"]["id"] == response_id


# -- the page: Chromium shows the pause beside its connection state, and clears it --------------------

@pytest.fixture
def daphne_env(private_redis) -> dict[str, str]:
    """`daphne_server` (tests/conftest.py) on this module's private Redis."""
    return {"REDIS_URL": private_redis.url}


@pytest.mark.browser
def test_the_page_says_live_view_paused_and_keeps_chatting(daphne_server, private_redis):
    from playwright.sync_api import expect, sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.browser.support import composer_ready, create_user, send, sign_in

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing")
    create_user("alice", "alice-password-1")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(base_url=daphne_server.base_url)
            context.set_default_timeout(WAIT * 1000)
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            sign_in(page, "alice", "alice-password-1")
            page.get_by_role("button", name="New conversation").click()
            page.get_by_role("dialog", name="New conversation").get_by_label("Title").fill("Outage")
            page.get_by_role("button", name="Create conversation").click()
            composer_ready(page)
            state = page.locator("#connection-state")
            send(page, "remember: kestrel")
            expect(page.locator("#transcript > article.turn").nth(0)).to_contain_text("I will remember: kestrel")

            private_redis.kill()
            expect(state).to_contain_text("live view paused")
            expect(state).to_have_attribute("data-live", "paused")
            send(page, "what did I ask you to remember?")
            expect(page.locator("#transcript > article.turn").nth(1)).to_contain_text(
                "You asked me to remember: kestrel.")

            private_redis.start()
            expect(state).not_to_contain_text("paused")
            expect(state).to_have_attribute("data-state", "open")
            expect(page.locator("#transcript > article.turn")).to_have_count(2)  # the catch-up changed nothing
            assert not problems, problems
        finally:
            chromium.close()
