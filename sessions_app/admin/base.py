"""What every Switchboard ModelAdmin shares: records are read-only, lists load display.py's CSS and JS."""

from __future__ import annotations

from django.contrib import admin

from .display import ListMedia, pretty_json


class ListAdmin(admin.ModelAdmin):
    """A ModelAdmin whose pages load the list look (badges, short ids with copy buttons, JSON blocks)."""

    Media = ListMedia


class RecordAdmin(ListAdmin):
    """Records are what happened: staff read them, nobody edits them by hand (they go with their conversation).

    JSON fields named in `json_fields` show on the change page as a collapsible, indented block."""

    json_fields: tuple[str, ...] = ()

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_fields(self, request, obj=None):
        return [f"{name}_json" if name in self.json_fields else name for name in super().get_fields(request, obj)]

    def __getattr__(self, name: str):
        """`<field>_json` of a field in `json_fields`: that field, pretty-printed."""
        field = name.removesuffix("_json")
        if name.endswith("_json") and field in type(self).json_fields:
            label = self.model._meta.get_field(field).verbose_name

            def show(obj):
                return pretty_json(getattr(obj, field))

            show.short_description = label
            return show
        raise AttributeError(name)
