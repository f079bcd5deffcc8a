"""Django-side chores of the relay benchmark, run in a subprocess per database.

bench/relay.py benchmarks Switchboard on PostgreSQL and on SQLite in one run,
so it never configures Django itself: it runs this with the database's
environment (DATABASE_URL, SWITCHBOARD_VAR_DIR, OPENAI_WEBSOCKET_URL, …).

    python bench/switchboard_db.py prepare   # migrate, sync the default profile, print {"token": "sb_…"}
    python bench/switchboard_db.py dump      # print {"resp_…": {"status": …, "text": …}, …}
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

BENCH_USERNAME = "bench"


def prepare() -> dict[str, str]:
    """Migrate, point the default upstream profile at OPENAI_WEBSOCKET_URL, issue a token."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from sessions_app.models import ApiToken, UserLimits
    from sessions_app.services import default_profile_sync

    call_command("migrate", interactive=False, verbosity=0)
    profile = default_profile_sync()
    user, _ = get_user_model().objects.get_or_create(username=BENCH_USERNAME)
    # The benchmark's one user opens hundreds of sockets and thousands of responses, so no limit may refuse it.
    # 0 is no limit at all (limits.py): nothing is counted. BENCH_LIMITS=counted sets limits no run reaches
    # instead, so every socket pays what a user under the default limits pays: its admission row, the count
    # of its upstream sockets, the usage snapshot.
    bound = 10**9 if os.environ.get("BENCH_LIMITS") == "counted" else 0
    UserLimits.objects.update_or_create(user=user, defaults={
        "max_sockets": bound, "max_upstream_sockets": bound, "responses_per_hour": bound, "tokens_per_day": bound})
    _, raw = ApiToken.issue(user=user, name="relay benchmark")
    return {"token": raw, "upstream": profile.websocket_url}


def _item_output_text(item) -> str:
    if item.text:
        return item.text
    parts = (item.raw or {}).get("content") or []
    return "".join(part.get("text", "") for part in parts if part.get("type") == "output_text")


def dump() -> dict[str, dict]:
    """Every stored response with its status and output message text, by response id."""
    from sessions_app.models import Item, ResponseRecord

    stored: dict[str, dict] = {}
    texts: dict[int, list[str]] = {}
    items = Item.objects.filter(direction=Item.Direction.OUTPUT, item_type=Item.ItemType.MESSAGE).order_by(
        "response_id", "position"
    )
    for item in items.iterator():
        texts.setdefault(item.response_id, []).append(_item_output_text(item))
    for record in ResponseRecord.objects.exclude(response_id=None).only("pk", "response_id", "status").iterator():
        stored[record.response_id] = {"status": record.status, "text": "".join(texts.get(record.pk, []))}
    return stored


if __name__ == "__main__":
    django.setup()
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "prepare":
        print(json.dumps(prepare()))
    elif command == "dump":
        print(json.dumps(dump()))
    else:
        sys.exit(f"usage: {sys.argv[0]} prepare|dump")
