"""The conversation settings form: the New conversation dialog and the conversation page's settings drawer.

Rules:

* One form for both: `views.conversation_new` creates with it, `views.conversation_settings` changes an
  existing conversation with it. Either saves through services.py, and only once every field is valid:
  a refused form saves nothing.
* The upstream profile is one of `selectors.profiles_usable_by(user)`; none chosen means the
  conversation's current one (if still usable), else the default, else the first usable.
* The model must be one the profile allows (`UpstreamProfile.allowed_models`; empty allows any);
  none given means the profile's `default_model`.
* Tools are checked by protocol/tools.py (static/js/tool_checks.js repeats those checks in the browser).
* Numbers follow the API: `max_output_tokens` at least 16 (protocol.events.MIN_OUTPUT_TOKENS); a
  `compact_threshold` is a positive number of tokens. Empty means "not sent".
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.forms.models import model_to_dict

from . import selectors
from .models import Conversation, UpstreamProfile
from .protocol.events import MIN_OUTPUT_TOKENS
from .protocol.tools import ToolsInvalid, tools_from_text

__all__ = ["ConversationSettingsForm", "SETTINGS_FIELDS"]

#: What the form sets on a conversation, in the order it shows them.
SETTINGS_FIELDS = ("title", "upstream_profile", "model", "reasoning_effort", "max_output_tokens", "instructions",
                   "tools", "store", "recovery_enabled", "compact_threshold")
MAX_INSTRUCTIONS = 50_000  # characters
MAX_TOOLS_TEXT = 100_000  # characters of tools JSON
MAX_OUTPUT_TOKENS = 1_000_000
MAX_COMPACT_THRESHOLD = 10_000_000
NO_PROFILE = "No upstream profile is available to you. Ask an administrator to add one."


class ToolsField(forms.CharField):
    """Function tools as JSON text in the form, a list in `cleaned_data`."""

    widget = forms.Textarea

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, strip=False, max_length=MAX_TOOLS_TEXT, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return json.dumps(value, indent=2, ensure_ascii=False) if value else ""
        return value

    def clean(self, value: Any) -> list[dict[str, Any]]:
        text = super().clean(value)
        try:
            return tools_from_text(text)
        except ToolsInvalid as exc:
            raise forms.ValidationError(exc.messages, code="invalid_tools") from None


class ConversationSettingsForm(forms.ModelForm):
    """See the module rules. `instance`: the conversation to change (none: a new one)."""

    upstream_profile = forms.ModelChoiceField(
        queryset=UpstreamProfile.objects.none(), required=False, empty_label=None, label="Upstream profile",
        help_text="Where this conversation's turns are sent.",
        error_messages={"invalid_choice": "That profile is not available to you: choose one from the list."},
    )
    model = forms.CharField(
        required=False, max_length=100, label="Model",
        help_text="Sent as model on each turn. Empty: the profile's default model.",
    )
    reasoning_effort = forms.ChoiceField(
        required=False, choices=[("", "Model default"), *Conversation.ReasoningEffort.choices],
        label="Reasoning effort",
        help_text='Sent as reasoning: {"effort": …}. Only models that reason take it (gpt-5 family, o-series); '
                  "keep Model default for the others.",
        error_messages={"invalid_choice": "Choose one of the listed efforts."},
    )
    max_output_tokens = forms.IntegerField(
        required=False, min_value=MIN_OUTPUT_TOKENS, max_value=MAX_OUTPUT_TOKENS, label="Max output tokens",
        help_text=f"Sent as max_output_tokens (at least {MIN_OUTPUT_TOKENS}). Empty: no limit.",
        error_messages={
            "min_value": f"At least {MIN_OUTPUT_TOKENS} (the API refuses fewer), or empty for no limit.",
            "max_value": f"At most {MAX_OUTPUT_TOKENS:,}.",
            "invalid": "A whole number of tokens, or empty for no limit.",
        },
    )
    instructions = forms.CharField(
        required=False, max_length=MAX_INSTRUCTIONS, label="Instructions", widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Sent as instructions with every turn (they are not carried over by previous_response_id).",
    )
    tools = ToolsField(
        label="Function tools (JSON)",
        help_text='A JSON list of {"type": "function", "name", "description", "parameters", "strict"}. '
                  "Empty: no tools.",
    )
    store = forms.BooleanField(
        required=False, label="Store responses upstream (store)",
        help_text="Off: the upstream keeps nothing; a continuation on a new socket is rebuilt from "
                  "Switchboard's records.",
    )
    recovery_enabled = forms.BooleanField(
        required=False, label="Recover lost context",
        help_text="When the upstream lost the context (a new socket, an expired cache), rebuild it from the "
                  "records and resend.",
    )
    compact_threshold = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_COMPACT_THRESHOLD, label="Compaction threshold (tokens)",
        help_text='Sent as context_management: [{"type": "compaction", "compact_threshold": N}]: the upstream '
                  "compacts the context past N tokens. Steering is not available then. Empty: off.",
        error_messages={
            "min_value": "A positive number of tokens, or empty to turn compaction off.",
            "max_value": f"At most {MAX_COMPACT_THRESHOLD:,}.",
            "invalid": "A whole number of tokens, or empty to turn compaction off.",
        },
    )

    class Meta:
        model = Conversation
        fields = SETTINGS_FIELDS
        labels = {"title": "Title"}
        help_texts = {"title": "Shown in your list. Empty: the first line of your first message."}
        widgets = {"title": forms.TextInput(attrs={"placeholder": "Title (optional)"})}

    def __init__(self, data: Any = None, *, user, instance: Conversation | None = None) -> None:
        self.user = user
        self.profiles = selectors.profiles_usable_by(user=user)
        initial: dict[str, Any] = {}
        if instance is None:  # a new conversation's defaults (a ModelForm takes none from a new instance)
            profile = self._fallback_profile(None)
            initial = {**model_to_dict(Conversation(), fields=SETTINGS_FIELDS), "upstream_profile": profile,
                       "model": profile.default_model if profile else ""}
        super().__init__(data, instance=instance, initial=initial)
        self.fields["upstream_profile"].queryset = UpstreamProfile.objects.filter(pk__in=[p.pk for p in self.profiles])
        model_field = self.fields["model"]
        allowed = self._shown_profile_models()
        if allowed:  # a list to choose from; the script swaps it when another profile is chosen
            current = self["model"].value() or ""
            choices = [(m, m) for m in allowed] + ([(current, f"{current} (not allowed)")]
                                                   if current and current not in allowed else [])
            model_field.widget = forms.Select(choices=choices)
        for name, field in self.fields.items():
            auto_id = self[name].auto_id
            described = ([f"{auto_id}_helptext"] if field.help_text else []) + [f"{auto_id}_error"]
            field.widget.attrs["aria-describedby"] = " ".join(described)

    # -- what the template and the script need -------------------------------------------

    def profile_models(self) -> dict[str, dict[str, Any]]:
        """Each offered profile's default and allowed models (json_script for static/js/settings.js)."""
        return {str(p.pk): {"name": p.name, "default_model": p.default_model,
                            "allowed_models": list(p.allowed_models or [])} for p in self.profiles}

    def _shown_profile_models(self) -> list[str]:
        chosen = self["upstream_profile"].value()
        profile = next((p for p in self.profiles if str(p.pk) == str(chosen)), None)
        return list(profile.allowed_models or []) if profile is not None else []

    def _fallback_profile(self, current: UpstreamProfile | None) -> UpstreamProfile | None:
        usable = {p.pk: p for p in self.profiles}
        if current is not None and current.pk in usable:
            return usable[current.pk]
        default = next((p for p in self.profiles if p.is_default), None)
        return default or (self.profiles[0] if self.profiles else None)

    # -- validation --------------------------------------------------------------------------

    def clean_model(self) -> str:
        model = self.cleaned_data.get("model", "")
        if any(c.isspace() or not c.isprintable() for c in model):
            raise forms.ValidationError("A model name has no spaces or control characters.")
        return model

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "upstream_profile" in self.errors:
            return cleaned
        profile = cleaned.get("upstream_profile")
        if profile is None:
            profile = self._fallback_profile(None if self.instance._state.adding else self.instance.upstream_profile)
            if profile is None:
                self.add_error("upstream_profile", NO_PROFILE)
                return cleaned
            cleaned["upstream_profile"] = profile
        if "model" not in self.errors:
            model = cleaned.get("model") or profile.default_model or settings.SWITCHBOARD_DEFAULT_MODEL
            if not profile.allows_model(model):
                self.add_error("model", f'The profile "{profile.name}" does not offer "{model}". Choose one of: '
                                        f'{", ".join(profile.allowed_models)}.')
            else:
                cleaned["model"] = model
        return cleaned

    def settings(self) -> dict[str, Any]:
        """The valid settings, by Conversation field name (call after is_valid())."""
        return {name: self.cleaned_data[name] for name in SETTINGS_FIELDS}

    def errors_by_field(self) -> dict[str, list[str]]:
        """{field: [messages]} for a JSON answer ("__all__" for the form as a whole)."""
        return {name: [str(message) for message in messages] for name, messages in self.errors.items()}
