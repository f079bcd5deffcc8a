"""How long the staff overview (and the errors and usage pages) take to render over 100,000 response records.

Not a test and not run in CI: it prints figures. Each database runs in its own subprocess (one process
cannot configure Django for two databases): PostgreSQL in a throwaway database (bench/throwaway_pg.py),
SQLite in a temporary SWITCHBOARD_VAR_DIR. Each is migrated, seeded with a week of records (100,000
responses over 200 conversations of 20 users and 4 models, with errors, compactions and upstream sockets),
then each page is rendered through Django's test client as a staff user, 1 warm-up and 5 timed runs.

    .venv/bin/python bench/overview.py                 # both databases
    .venv/bin/python bench/overview.py --ways sqlite   # one
    .venv/bin/python bench/overview.py --records 20000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = {"overview (day)": "/admin/overview/", "overview (week)": "/admin/overview/?window=week",
         "errors (week)": "/admin/errors/", "usage (week)": "/admin/usage-cost/"}
RUNS = 5


def seed(records: int) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from sessions_app.models import (
        CompactionEvent,
        Conversation,
        ErrorEvent,
        ModelPrice,
        ResponseRecord,
        UpstreamConnection,
    )

    rng = random.Random(15)
    now = timezone.now()
    week = 7 * 24 * 3600
    users = [get_user_model().objects.create_user(username=f"user{i}") for i in range(20)]
    models = ["gpt-5.5", "gpt-5.5-mini", "gpt-5.4", "o-bench"]
    for model in models[:3]:
        ModelPrice.objects.create(model=model, input_per_million=2, cached_input_per_million=0.5, output_per_million=8)
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=users[i % 20], title=f"bench {i}", model=models[i % 4]) for i in range(200))
    connections = UpstreamConnection.objects.bulk_create(
        UpstreamConnection(conversation=conversations[i % 200], owner=conversations[i % 200].owner, url="ws://bench",
                           opened_at=now - timedelta(hours=2),
                           closed_at=now - timedelta(seconds=rng.randrange(week)),
                           close_reason=rng.choice(["connection_limit", "idle", "upstream_error", "client_left",
                                                    "server_shutdown"]))
        for i in range(5000))
    statuses = ["completed"] * 90 + ["failed"] * 6 + ["incomplete"] * 2 + ["interrupted"] * 2
    batch: list[ResponseRecord] = []
    for i in range(records):
        sent = now - timedelta(seconds=rng.randrange(week))
        conversation = conversations[i % 200]
        inputs = rng.randrange(100, 20_000)
        batch.append(ResponseRecord(
            conversation=conversation, response_id=f"resp_bench{i}", connection=connections[i % 5000],
            model=conversation.model, status=rng.choice(statuses), sent_at=sent,
            first_text_at=sent + timedelta(milliseconds=rng.randrange(150, 4000)),
            completed_at=sent + timedelta(seconds=rng.randrange(1, 30)), input_tokens=inputs,
            cached_input_tokens=rng.randrange(inputs), output_tokens=rng.randrange(10, 2000),
            total_tokens=inputs + 1000))
        if len(batch) == 5000:
            ResponseRecord.objects.bulk_create(batch)
            batch = []
    ResponseRecord.objects.bulk_create(batch)
    codes = ["previous_response_not_found", "rate_limit_exceeded", "invalid_json", "upstream_disconnected",
             "websocket_connection_limit_reached", "server_error", "conversation_busy"]
    ErrorEvent.objects.bulk_create(
        ErrorEvent(conversation=conversations[i % 200], source="upstream", code=rng.choice(codes), message="bench",
                   created_at=now - timedelta(seconds=rng.randrange(week)), count=rng.choice([1, 1, 1, 3]))
        for i in range(5000))
    CompactionEvent.objects.bulk_create(
        CompactionEvent(conversation=conversations[i % 200], kind="server_side", input_tokens_before=200_000,
                        tokens_after=rng.randrange(10_000, 60_000),
                        created_at=now - timedelta(seconds=rng.randrange(week)))
        for i in range(1000))


def inner(records: int) -> dict:
    """In the subprocess: migrate, seed, time each page (milliseconds)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host, nothing else
    # DEBUG is off (production-shaped: no query log), but nothing ran collectstatic: plain static URLs.
    from django.conf import settings
    from django.test import override_settings

    override_settings(STORAGES={**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}).enable()
    call_command("migrate", interactive=False, verbosity=0)
    started = time.perf_counter()
    seed(records)
    seeded = time.perf_counter() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    staff = get_user_model().objects.create_user(username="benchstaff", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    out = {"database": connection.vendor, "records": records, "seed_seconds": round(seeded, 1), "pages": {}}
    for label, url in PAGES.items():
        assert client.get(url, secure=True).status_code == 200, url
        times = []
        for _ in range(RUNS):
            t = time.perf_counter()
            response = client.get(url, secure=True)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
        out["pages"][label] = {"median_ms": round(statistics.median(times)), "max_ms": round(max(times))}
    return out


def run(way: str, records: int) -> dict:
    from cryptography.fernet import Fernet

    env = {**os.environ, "DEBUG": "false", "LOG_LEVEL": "WARNING", "SECRET_KEY": secrets.token_urlsafe(50),
           "SWITCHBOARD_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    env.pop("DATABASE_URL", None)
    with tempfile.TemporaryDirectory(prefix="overview-bench-") as var:
        env["SWITCHBOARD_VAR_DIR"] = var
        if way == "postgresql":
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from throwaway_pg import throwaway_database

            with throwaway_database("switchboard_overview_bench") as url:
                env["DATABASE_URL"] = url
                return _child(env, records)
        return _child(env, records)


def _child(env: dict, records: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--inner", "--records", str(records)], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--ways", default="postgresql,sqlite")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(inner(args.records)))
        return
    for way in args.ways.split(","):
        result = run(way, args.records)
        print(f"{result['database']}: {result['records']} responses (seeded in {result['seed_seconds']} s)")
        for label, figures in result["pages"].items():
            print(f"  {label:<16} median {figures['median_ms']:>5} ms   max {figures['max_ms']:>5} ms")


if __name__ == "__main__":
    main()
