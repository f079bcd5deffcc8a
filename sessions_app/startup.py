"""What `python -m sessions_app.serve` checks before it listens: production never starts unsafe."""

from __future__ import annotations

import sys

__all__ = ["refuse_unsafe_start"]


def refuse_unsafe_start() -> None:
    """Exit (status 2, message on stderr) when a security check fails (checks.py), before any socket."""
    import django
    from django.db import connections

    django.setup()
    from .checks import demo_password_errors

    try:
        errors = demo_password_errors()
    finally:
        connections.close_all()  # Daphne's threads open their own
    if errors:
        for error in errors:
            print(f"Switchboard will not start: {error.msg}\n  {error.hint}", file=sys.stderr)
        raise SystemExit(2)
