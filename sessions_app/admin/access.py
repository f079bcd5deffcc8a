"""Who may do what: personal API tokens, per-user limits, and the user admin that shows them."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from ..models import ApiToken, UserLimits
from . import display
from .base import ListAdmin


@admin.register(UserLimits)
class UserLimitsAdmin(ListAdmin):
    """Per-user overrides: empty means the SWITCHBOARD_LIMIT_* default, 0 means no limit."""

    list_display = ["user", "max_sockets", "max_upstream_sockets", "responses_per_hour", "tokens_per_day"]
    search_fields = ["user__username"]
    raw_id_fields = ["user"]
    list_select_related = ["user"]


class UserLimitsInline(admin.StackedInline):
    model = UserLimits
    can_delete = True
    max_num = 1
    extra = 0
    verbose_name_plural = "Switchboard limits (empty: the default, 0: no limit)"


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class SwitchboardUserAdmin(UserAdmin):
    """Django's user admin, with the user's Switchboard limits on the change page."""

    def get_inlines(self, request, obj=None):
        return [*super().get_inlines(request, obj), UserLimitsInline] if obj is not None else []


@admin.register(ApiToken)
class ApiTokenAdmin(ListAdmin):
    list_display = ["prefix", "state", "name", "user", "scopes", "last_used", "created"]
    list_filter = ["revoked_at", "reads_metrics", "created_at"]
    search_fields = ["prefix", "name", "user__username"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    raw_id_fields = ["user"]
    list_select_related = ["user"]
    actions = ["revoke_tokens"]

    def has_add_permission(self, request) -> bool:
        return False  # tokens are issued by their owner (Tokens page) or `manage.py create_api_token`

    @admin.display(description="state", ordering="revoked_at")
    def state(self, obj: ApiToken) -> str:
        return display.badge("failed", "revoked") if obj.revoked_at else display.badge("completed", "active")

    @admin.display(description="may also", empty_value="")
    def scopes(self, obj: ApiToken) -> str:
        return display.flag(obj.reads_metrics, "read /metrics")

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, obj: ApiToken) -> str:
        return display.when(obj.last_used_at)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: ApiToken) -> str:
        return display.when(obj.created_at)

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request, queryset) -> None:
        for token in queryset.filter(revoked_at=None):
            token.revoke()
