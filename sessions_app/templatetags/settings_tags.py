"""The New conversation dialog's form, for templates whose view does not build it (the dashboard's toolbar)."""

from __future__ import annotations

from django import template

from ..forms import ConversationSettingsForm

register = template.Library()


@register.simple_tag(takes_context=True)
def new_conversation_form(context) -> ConversationSettingsForm:
    """The form as a page's view would build it, unless the page already has one (with the errors of a POST)."""
    return context.get("new_conversation_form") or ConversationSettingsForm(user=context["request"].user)
