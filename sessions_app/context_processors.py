from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def switchboard(request: HttpRequest) -> dict[str, object]:
    return {"signup_enabled": settings.SWITCHBOARD_SIGNUP_ENABLED}
