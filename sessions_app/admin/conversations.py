"""Conversations: the list, the change page with its responses, the chain tree and the JSON export."""

from __future__ import annotations

import io
import zipfile

from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from ..chain_tree import conversation_tree
from ..exports import conversation_export_json
from ..models import Conversation, ResponseRecord
from ..selectors import with_response_totals
from . import display
from .base import ListAdmin

EXPORT_MAX_CONVERSATIONS = 50  # one action, one response: a bigger export belongs to the API, page by page


class ResponseInline(admin.TabularInline):
    """The conversation's responses as the response list reads them: short columns first, times to the
    millisecond, ids cut short (each row's heading names its response and links to it)."""

    model = ResponseRecord
    fk_name = "conversation"
    fields = ["sent", "status_badge", "origin_label", "tokens", "took", "parent_short", "lane"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        resent_by = ResponseRecord.objects.filter(supersedes__isnull=False, supersedes=OuterRef("pk"))
        return (super().get_queryset(request).select_related("parent").annotate(recovered=Exists(resent_by))
                .order_by("sent_at", "pk"))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="sent")
    def sent(self, obj: ResponseRecord) -> str:
        return display.when(obj.sent_at)

    @admin.display(description="status")
    def status_badge(self, obj: ResponseRecord) -> str:
        return format_html("{} {}{}", display.badge(obj.status, obj.get_status_display()),
                           display.flag(obj.supersedes_id is not None, "resent"),
                           display.flag(getattr(obj, "recovered", False), "recovered"))

    @admin.display(description="origin")
    def origin_label(self, obj: ResponseRecord) -> str:
        return obj.get_origin_display()

    @admin.display(description="tokens")
    def tokens(self, obj: ResponseRecord) -> str:
        return display.number(obj.total_tokens)

    @admin.display(description="took")
    def took(self, obj: ResponseRecord) -> str:
        return display.duration(obj.sent_at, obj.completed_at)

    @admin.display(description="after")
    def parent_short(self, obj: ResponseRecord) -> str:
        if obj.parent is None:
            return display.EMPTY
        return display.short_id(obj.parent.response_id or f"attempt #{obj.parent.pk}")

    @admin.display(description="lane")
    def lane(self, obj: ResponseRecord) -> str:
        return display.short_id(obj.stream_id)


@admin.register(Conversation)
class ConversationAdmin(ListAdmin):
    list_display = ["__str__", "status_badge", "responses", "tokens", "model", "owner", "created_via", "flags",
                    "updated", "chain_link", "id_short"]
    list_filter = ["status", "store", "created_via", "upstream_profile", "created_at"]
    search_fields = ["id", "title", "owner__username", "latest_response_id"]
    # What happened, not settings: the relay sets status, the creating socket sets created_via and
    # api_token, and a conversation never changes owner (its records and ids are the owner's).
    readonly_fields = ["id", "created", "updated_at_when", "latest_response_id", "status", "created_via", "api_token"]
    raw_id_fields = ["owner"]
    list_select_related = ["owner"]
    date_hierarchy = "created_at"
    inlines = [ResponseInline]
    actions = ["export_json"]

    def get_queryset(self, request):
        return with_response_totals(super().get_queryset(request))

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "owner"] if obj is not None else fields

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Conversation) -> str:
        return display.badge(obj.status, obj.get_status_display())

    @admin.display(description="responses", ordering="response_total")
    def responses(self, obj: Conversation) -> int:
        return obj.response_total

    @admin.display(description="tokens", ordering="token_total")
    def tokens(self, obj: Conversation) -> str:
        return display.number(obj.token_total)

    @admin.display(description="", empty_value="")
    def flags(self, obj: Conversation) -> str:
        return format_html("{}{}", display.flag(obj.store, "store"), display.flag(obj.archived_at is not None,
                                                                                  "archived"))

    @admin.display(description="last activity", ordering="updated_at")
    def updated(self, obj: Conversation) -> str:
        return display.when(obj.updated_at)

    @admin.display(description="created at")
    def created(self, obj: Conversation) -> str:
        return display.when(obj.created_at)

    @admin.display(description="updated at")
    def updated_at_when(self, obj: Conversation) -> str:
        return display.when(obj.updated_at)

    @admin.display(description="chain")
    def chain_link(self, obj: Conversation) -> str:
        return format_html('<a href="{}">tree</a>', reverse("admin:sessions_app_conversation_chain", args=[obj.pk]))

    @admin.display(description="id", ordering="id")
    def id_short(self, obj: Conversation) -> str:
        return display.short_id(str(obj.pk))

    @admin.action(description="Export selected conversations as JSON")
    def export_json(self, request, queryset):
        """One conversation: its JSON file; several: a zip of one file each."""
        conversations = list(queryset.select_related("owner", "upstream_profile", "api_token")
                             [:EXPORT_MAX_CONVERSATIONS])
        if len(conversations) == 1:
            response = HttpResponse(conversation_export_json(conversation=conversations[0]),
                                    content_type="application/json")
            response["Content-Disposition"] = f'attachment; filename="conversation-{conversations[0].pk}.json"'
            return response
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for conversation in conversations:
                archive.writestr(f"conversation-{conversation.pk}.json",
                                 conversation_export_json(conversation=conversation))
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = 'attachment; filename="conversations.zip"'
        return response

    def get_urls(self):
        chain = path(
            "<uuid:pk>/chain/", self.admin_site.admin_view(self.chain_view), name="sessions_app_conversation_chain"
        )
        return [chain, *super().get_urls()]

    def chain_view(self, request, pk):
        """The continuation chain drawn as a tree: forks branch, resent attempts fold into their turn."""
        conversation = get_object_or_404(Conversation.objects.select_related("owner"), pk=pk)
        tree = conversation_tree(conversation=conversation)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Chain of {conversation}",
            "turns": sum(1 for entry in tree if entry.kind == "node"),
            "opts": self.model._meta,
            "conversation": conversation,
            "tree": tree,
            "errors": conversation.errors.select_related("response").order_by("-created_at")[:50],
            "compactions": conversation.compactions.select_related("response").order_by("-created_at")[:50],
        }
        return TemplateResponse(request, "admin/sessions_app/conversation_chain.html", context)
