"""sessions_app.event_loop: Daphne runs on uvloop unless SWITCHBOARD_EVENT_LOOP says otherwise; a real
`python -m sessions_app.serve` says in /metrics which loop it runs on, and refuses a loop it cannot run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
import uvloop
from django.db import connection as db_connection

from sessions_app.event_loop import EventLoopChoiceError, choose_event_loop, event_loop_in_use
from tests.live import ROOT, daphne_process, free_port, metrics_token, scrape_metrics


@pytest.fixture
def policy():
    """Put the test process's own policy back afterwards."""
    before = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(before)


@pytest.mark.parametrize("setting", [None, "", "auto", "uvloop", " UVLOOP "])
def test_uvloop_is_chosen_unless_told_otherwise(policy, setting) -> None:
    environ = {} if setting is None else {"SWITCHBOARD_EVENT_LOOP": setting}
    assert choose_event_loop(environ) == "uvloop"
    assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
    assert event_loop_in_use() == "uvloop"
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncio_is_the_standard_library_s_loop(policy) -> None:
    choose_event_loop({"SWITCHBOARD_EVENT_LOOP": "uvloop"})
    assert choose_event_loop({"SWITCHBOARD_EVENT_LOOP": "asyncio"}) == "asyncio"
    assert event_loop_in_use() == "asyncio"
    loop = asyncio.new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop) and isinstance(loop, asyncio.SelectorEventLoop)
    finally:
        loop.close()


def test_an_unknown_loop_is_refused_with_the_choices(policy) -> None:
    with pytest.raises(EventLoopChoiceError, match="'trio' is not one of auto, uvloop, asyncio"):
        choose_event_loop({"SWITCHBOARD_EVENT_LOOP": "trio"})
    assert event_loop_in_use() == "asyncio"  # nothing was changed


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(policy, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert choose_event_loop({}) == "asyncio"
    assert event_loop_in_use() == "asyncio"
    with pytest.raises(EventLoopChoiceError, match="uvloop is not installed"):
        choose_event_loop({"SWITCHBOARD_EVENT_LOOP": "uvloop"})


def test_importing_serve_leaves_the_policy_alone() -> None:
    """Only `python -m sessions_app.serve` chooses: tests import the module for its parts."""
    done = subprocess.run([sys.executable, "-c", "import django; django.setup(); "
                           "import sessions_app.serve; from sessions_app.event_loop import event_loop_in_use; "
                           "print(event_loop_in_use())"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "asyncio"


def test_serve_refuses_a_loop_it_cannot_run() -> None:
    done = subprocess.run([sys.executable, "-m", "sessions_app.serve", "-b", "127.0.0.1", "-p", "0",
                           "project.asgi:application"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "SWITCHBOARD_EVENT_LOOP": "gevent"})
    assert done.returncode == 1
    assert "Switchboard will not start: SWITCHBOARD_EVENT_LOOP='gevent' is not one of auto, uvloop, asyncio." \
        in done.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("setting", "runs_on"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_a_served_process_runs_on_the_loop_chosen(staff_user, setting, runs_on) -> None:
    token = metrics_token(staff_user)
    env = {} if setting is None else {"SWITCHBOARD_EVENT_LOOP": setting}
    with daphne_process(db_connection.settings_dict, env) as server:
        [sample] = scrape_metrics(server.base_url, token)["switchboard_process_info"]
    assert sample.value == 1 and sample.labels["event_loop"] == runs_on


@pytest.mark.parametrize("command", [("-m", "sessions_app.simulator"), ("manage.py", "simulate_upstream")])
@pytest.mark.parametrize(("setting", "runs_on"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_the_simulator_runs_on_the_loop_chosen_and_says_which(command, setting, runs_on) -> None:
    """The built-in upstream follows the same setting as Daphne: its paced streams are mostly timers and sends."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "PYTHONUNBUFFERED": "1"}
    env.pop("SWITCHBOARD_EVENT_LOOP", None)
    if setting is not None:
        env["SWITCHBOARD_EVENT_LOOP"] = setting
    with subprocess.Popen([sys.executable, *command, "--port", str(free_port())], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            announced = process.stdout.readline()
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert "Responses simulator on ws://127.0.0.1:" in announced and f"; {runs_on} event loop)" in announced


def test_the_simulator_refuses_a_loop_it_cannot_run() -> None:
    done = subprocess.run([sys.executable, "-m", "sessions_app.simulator", "--port", str(free_port())], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "SWITCHBOARD_EVENT_LOOP": "gevent"})
    assert done.returncode == 1
    assert "The simulator will not start: SWITCHBOARD_EVENT_LOOP='gevent' is not one of auto, uvloop, asyncio." \
        in done.stderr
