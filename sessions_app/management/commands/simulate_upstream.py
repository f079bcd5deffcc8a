"""`python manage.py simulate_upstream`: run the offline Responses upstream (docs/simulator.md).

A thin wrapper over `python -m sessions_app.simulator`: same options, and it
never touches the database (no system or migration checks are needed to
serve fake model output).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sessions_app.simulator.__main__ import add_arguments, config_from, serve


class Command(BaseCommand):
    help = "Serve a protocol-faithful Responses API WebSocket simulator until SIGINT/SIGTERM."
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        serve(config_from(options), announce=self.stdout.write)
