"""The model price table in the admin: staff keep it, the usage pages estimate cost from it (analytics.cost).

Registered from here (imported by staff_views, which project/urls.py loads before any admin page is
served) so the price table ships with the pages that read it.
"""

from __future__ import annotations

from django.contrib import admin

from .models import ModelPrice


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["model", "input_per_million", "cached_input_per_million", "output_per_million", "currency",
                    "updated_at"]
    search_fields = ["model"]
    readonly_fields = ["updated_at"]
