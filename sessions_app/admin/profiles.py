"""Upstream profiles: where traffic goes and with which key (write-only), and Test connection."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from ..crypto import mask_secret
from ..models import KEY_BOUND_FIELDS, UpstreamProfile
from ..profile_check import profile_check_connection
from . import display
from .base import ListAdmin

KEY_CLEARED_NOTE = "Changing this removes the stored API key, unless you enter the key again below."


class UpstreamProfileForm(forms.ModelForm):
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave empty to keep the stored key, except when you change the WebSocket URL, "
                  "auth style or extra headers: the stored key is then removed (it was given for the old "
                  "destination), so enter it again here to keep using one.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)

    class Meta:
        model = UpstreamProfile
        fields = "__all__"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in KEY_BOUND_FIELDS:
            if name in self.fields:
                field = self.fields[name]
                field.help_text = f"{field.help_text} {KEY_CLEARED_NOTE}".strip()

    def save(self, commit: bool = True) -> UpstreamProfile:
        profile = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            profile.set_api_key("")
        elif self.cleaned_data.get("api_key"):
            profile.set_api_key(self.cleaned_data["api_key"])
        if commit:
            profile.save()
            self.save_m2m()
        return profile


@admin.register(UpstreamProfile)
class UpstreamProfileAdmin(ListAdmin):
    """Profiles hold the key every user's traffic goes out with: only superusers write them, staff read.

    Every write is in the admin log (LogEntry) with the fields changed, and says when the key was removed
    because its URL, auth style or extra headers changed (UpstreamProfile.save clears it).
    """

    form = UpstreamProfileForm
    list_display = ["name", "state", "key_display", "auth_style", "default_model", "url_short"]
    list_filter = ["enabled", "auth_style", "is_default", "available_to_all"]
    search_fields = ["name", "websocket_url"]
    readonly_fields = ["key_display", "created_at", "updated_at"]
    filter_horizontal = ["allowed_users"]
    actions = ["test_connection"]
    change_form_template = "admin/sessions_app/upstreamprofile/change_form.html"

    @admin.display(description="state", ordering="enabled")
    def state(self, obj: UpstreamProfile) -> str:
        status = display.badge("completed", "enabled") if obj.enabled else display.badge("cancelled", "disabled")
        return format_html("{} {}", status, display.flag(obj.is_default, "default"))

    @admin.display(description="WebSocket URL", ordering="websocket_url")
    def url_short(self, obj: UpstreamProfile) -> str:
        return display.short_id(obj.websocket_url)

    @admin.action(description="Test connection (open a socket with the stored key)")
    def test_connection(self, request, queryset) -> None:
        for profile in queryset[:10]:  # each check may wait its timeout: a few at a time
            self._report(request, profile)

    def _report(self, request, profile: UpstreamProfile) -> None:
        result = profile_check_connection(profile=profile)
        level = messages.SUCCESS if result.ok else messages.ERROR
        self.message_user(request, f"{profile.name} ({profile.websocket_url}): {result.message}", level)

    def get_urls(self):
        check = path("<path:object_id>/test-connection/", self.admin_site.admin_view(self.test_connection_view),
                     name="sessions_app_upstreamprofile_test_connection")
        return [check, *super().get_urls()]

    def test_connection_view(self, request, object_id):
        """The change page's Test connection button (a POST with the CSRF token; staff who may view)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        profile = get_object_or_404(UpstreamProfile, pk=object_id if object_id.isdigit() else None)
        if not self.has_view_permission(request, profile):
            raise PermissionDenied
        self._report(request, profile)
        return HttpResponseRedirect(reverse("admin:sessions_app_upstreamprofile_change", args=[profile.pk]))

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    @admin.display(description="API key")
    def key_display(self, obj: UpstreamProfile) -> str:
        return mask_secret(obj.api_key_last4)

    def save_model(self, request, obj: UpstreamProfile, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.key_cleared_on_save:
            self.message_user(request, key_cleared_message(obj, form), messages.WARNING)

    def construct_change_message(self, request, form, formsets, add: bool = False):
        """Django's message (the fields changed) plus, when it happened, that the key was removed."""
        message = super().construct_change_message(request, form, formsets, add)
        if form.instance.key_cleared_on_save:
            cleared = f"API key (removed: {', '.join(_labels(form, form.instance.key_cleared_fields))} changed)"
            for part in message:
                if "changed" in part and "name" not in part:
                    part["changed"]["fields"].append(cleared)
                    break
            else:
                message.append({"changed": {"fields": [cleared]}})
        return message


def _labels(form, names) -> list[str]:
    return [str(form.fields[name].label) if name in form.fields else name for name in names]


def key_cleared_message(profile: UpstreamProfile, form) -> str:
    changed = " and ".join(_labels(form, profile.key_cleared_fields)) or "the destination"
    return (f"The stored API key of “{profile}” was removed because its {changed} changed: a key goes only to the "
            f"destination it was entered for. Enter the key again if this profile needs one.")
