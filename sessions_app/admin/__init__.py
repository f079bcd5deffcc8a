"""Staff views of everything Switchboard keeps, one module per area (registering on import).

API keys are write-only here: only their last 4 characters show. Lists put the short columns that matter
first (status, tokens, TTFT, duration) and long ids last, cut short with a copy button (display.py).
"""

from __future__ import annotations

from django.contrib import admin

from . import access, conversations, profiles, records  # noqa: F401  (each registers its ModelAdmins)
from .base import RecordAdmin
from .profiles import UpstreamProfileAdmin, UpstreamProfileForm, key_cleared_message

admin.site.site_header = "Switchboard administration"
admin.site.site_title = "Switchboard admin"
# The app list beside every page took a quarter of a 1280 px window from the lists; the index and the
# breadcrumbs still lead everywhere.
admin.site.enable_nav_sidebar = False

__all__ = ["RecordAdmin", "UpstreamProfileAdmin", "UpstreamProfileForm", "key_cleared_message"]
