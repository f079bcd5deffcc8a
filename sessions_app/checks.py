"""Refuse to run in production with the documented demo login still working.

The demo user (`demo` / `switchboard-demo`, README) is a superuser with a published password: fine on
a laptop, an open door anywhere else. With DEBUG off, its presence with that password is an error
(`manage.py check --deploy`), and `python -m sessions_app.serve` exits before listening (startup.py).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.checks import Error, Tags, register
from django.db import DatabaseError

__all__ = ["DEMO_PASSWORD_ID", "demo_password_errors", "check_demo_password"]

DEMO_PASSWORD_ID = "sessions_app.E001"


def demo_password_errors() -> list[Error]:
    """One Error when DEBUG is off and the demo user still signs in with the demo password."""
    if settings.DEBUG:
        return []
    username = settings.SWITCHBOARD_DEMO_USERNAME
    try:
        demo = get_user_model().objects.filter(username=username).first()
    except DatabaseError:  # not migrated (yet): no users, no demo user
        return []
    if demo is None or not demo.check_password(settings.SWITCHBOARD_DEMO_PASSWORD):
        return []
    return [Error(
        f"The demo user {username!r} still has the published demo password, and DEBUG is off.",
        hint=f"Set a new password (manage.py changepassword {username}) or delete the user, then start again.",
        id=DEMO_PASSWORD_ID,
    )]


@register(Tags.security, deploy=True)
def check_demo_password(app_configs=None, **kwargs) -> list[Error]:
    return demo_password_errors()
