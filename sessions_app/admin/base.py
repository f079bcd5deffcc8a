"""What every Switchboard ModelAdmin shares: records are read-only, lists load display.py's CSS and JS."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from .display import ListMedia, pretty_json, when


class ListAdmin(admin.ModelAdmin):
    """A ModelAdmin whose pages load the list look (badges, short ids with copy buttons, JSON blocks)."""

    Media = ListMedia


class RecordAdmin(ListAdmin):
    """Records are what happened: staff read them, nobody edits them by hand (they go with their conversation).

    On the (read-only) change page each value reads as what it means: a JSON field as a collapsible,
    indented block (`<name>_json`), a time with seconds and milliseconds (`<name>_when`), a boolean as
    Yes or No in words (`<name>_flag`), never a red cross."""

    SHOWN = {"json": (models.JSONField, lambda value: pretty_json(value)),
             "when": (models.DateTimeField, lambda value: when(value)),
             "flag": (models.BooleanField, lambda value: "Yes" if value else "No")}

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_fields(self, request, obj=None):
        return [self._shown_as(name) for name in super().get_fields(request, obj)]

    def _shown_as(self, name: str) -> str:
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:
            return name
        for suffix, (kind, _) in self.SHOWN.items():
            if isinstance(field, kind):
                return f"{name}_{suffix}"
        return name

    def __getattr__(self, name: str):
        """`<field>_json`, `<field>_when`, `<field>_flag`: that field, shown as SHOWN says."""
        field_name, _, suffix = name.rpartition("_")
        if suffix in self.SHOWN and field_name:
            kind, show = self.SHOWN[suffix]
            try:
                field = self.model._meta.get_field(field_name)
            except FieldDoesNotExist:
                field = None
            if isinstance(field, kind):
                def shown(obj):
                    return show(getattr(obj, field_name))

                shown.short_description = field.verbose_name
                return shown
        raise AttributeError(name)
