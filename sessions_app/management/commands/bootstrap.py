from __future__ import annotations

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from sessions_app.services import default_profile_sync, demo_user_ensure


class Command(BaseCommand):
    help = "Migrate, sync the default upstream profile from the environment, and (DEBUG only) create the demo user."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args, no_migrate: bool, **options) -> None:
        if not no_migrate:
            call_command("migrate", interactive=False, verbosity=0)
        profile = default_profile_sync()
        self.stdout.write(f"Default upstream: {profile.websocket_url}")
        if demo_user_ensure():
            self.stdout.write(
                f"Created demo user {settings.SWITCHBOARD_DEMO_USERNAME!r} / {settings.SWITCHBOARD_DEMO_PASSWORD!r}"
            )
