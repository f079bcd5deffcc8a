from __future__ import annotations

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from sessions_app.services import DemoUser, default_profile_sync, demo_user_ensure, is_loopback


class Command(BaseCommand):
    help = ("Migrate, sync the default upstream profile from the environment, and create the demo user "
            "(DEBUG, no users yet, and --bind on loopback only).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-migrate", action="store_true")
        parser.add_argument(
            "--bind", metavar="HOST", default=None,
            help="The address the server will listen on (scripts/run.sh passes $HOST). The demo user, whose "
                 "password is published, is created only for a loopback address (127.0.0.0/8, ::1, localhost).",
        )

    def handle(self, *args, no_migrate: bool, bind: str | None, **options) -> None:
        if not no_migrate:
            call_command("migrate", interactive=False, verbosity=0)
        profile = default_profile_sync()
        self.stdout.write(f"Default upstream: {profile.websocket_url}")
        outcome = demo_user_ensure(bind=bind)
        login = f"{settings.SWITCHBOARD_DEMO_USERNAME} / {settings.SWITCHBOARD_DEMO_PASSWORD}"
        if outcome in (DemoUser.CREATED, DemoUser.EXISTS):
            self.stdout.write(f"Demo user: {outcome.value} (sign in as {login})")
            if not is_loopback(bind):
                self.stdout.write(self.style.WARNING(
                    f"WARNING: the demo user has its published password and the server will listen on "
                    f"{bind or 'an unknown address'}: change it (manage.py changepassword "
                    f"{settings.SWITCHBOARD_DEMO_USERNAME}) or delete it."))
        elif outcome is DemoUser.NOT_LOOPBACK:
            self.stdout.write(
                f"Demo user: {outcome.value} ({bind or 'no --bind given'} is not 127.0.0.1, ::1 or localhost). "
                f"Create your own: manage.py createsuperuser")
        else:
            self.stdout.write(f"Demo user: {outcome.value}")
