"""django-axes with two limits: failures per (username, address) and, higher, per address.

Axes has one AXES_FAILURE_LIMIT, compared with the largest count among its AXES_LOCKOUT_PARAMETERS.
Settings list the pair first and the address second; this handler reports the pair's count, or the
limit itself once the address alone reached SWITCHBOARD_LOGIN_ADDRESS_FAILURE_LIMIT. So guessing one
account's password stops after 5 tries, and spraying many accounts from one address after 20.

A successful sign-in clears only its own (username, address) failures: with axes' default, anyone
holding one valid account could wipe an address's count by signing in between guesses.
"""

from __future__ import annotations

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from django.conf import settings
from django.db.models import Sum

__all__ = ["PairAndAddressHandler"]


class PairAndAddressHandler(AxesDatabaseHandler):
    def get_failures(self, request, credentials: dict | None = None) -> int:
        pair, address = (
            attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        if address >= settings.SWITCHBOARD_LOGIN_ADDRESS_FAILURE_LIMIT:
            return max(pair, get_failure_limit(request, credentials))
        return pair

    def reset_user_attempts(self, request, credentials: dict | None = None) -> int:
        pair = self.filter_user_attempts(request, credentials)[0]
        count, _ = pair.delete()
        return count
