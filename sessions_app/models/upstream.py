"""Upstream profiles: where a conversation's upstream socket goes, and the key it authenticates with."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from django.conf import settings
from django.db import models

from ..crypto import decrypt_secret, encrypt_secret
from .rows import ModelColumns, read_one

#: Where a key goes and how it is presented: changing any of these clears a stored key (UpstreamProfile.save).
KEY_BOUND_FIELDS = ("websocket_url", "auth_style", "extra_headers")


class UpstreamProfileQuerySet(models.QuerySet):
    def update(self, **kwargs):
        """`update()` bypasses `save()`: touching a key-bound field clears the key unless the same call sets it."""
        if any(name in kwargs for name in KEY_BOUND_FIELDS) and "api_key_encrypted" not in kwargs:
            kwargs.update(api_key_encrypted="", api_key_last4="")
        return super().update(**kwargs)

    update.alters_data = True


class UpstreamProfile(models.Model):
    """Where a conversation's upstream socket goes, and how it authenticates.

    A stored key belongs to the URL, auth style and extra headers it was entered for: all users share
    it, so pointing the profile somewhere else must not send it there. `save()` clears the key when any
    of KEY_BOUND_FIELDS changed since the row was loaded, unless `set_api_key` was called in between;
    `key_cleared_on_save` and `key_cleared_fields` then tell the caller (the admin tells the staff member).
    """

    class AuthStyle(models.TextChoices):
        BEARER = "bearer", "Authorization: Bearer header"
        AZURE_API_KEY = "azure_api_key", "Azure api-key header"
        NONE = "none", "No authentication"

    name = models.CharField(max_length=100, unique=True)
    websocket_url = models.CharField(
        "WebSocket URL", max_length=500, help_text="e.g. wss://api.openai.com/v1/responses (a query string is kept)"
    )
    auth_style = models.CharField(max_length=20, choices=AuthStyle.choices, default=AuthStyle.BEARER)
    api_key_encrypted = models.TextField(blank=True, editable=False, help_text="Fernet token; never shown.")
    api_key_last4 = models.CharField("API key (last 4)", max_length=4, blank=True, editable=False)
    default_model = models.CharField(max_length=100, default="gpt-5.5")
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Models clients may ask for; empty means any model."
    )
    extra_headers = models.JSONField(default=dict, blank=True, help_text="Extra handshake headers, as a JSON object.")
    enabled = models.BooleanField(default=True)
    available_to_all = models.BooleanField(default=True, help_text="If off, only the users listed may use it.")
    allowed_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="upstream_profiles")
    is_default = models.BooleanField(default=False, help_text="Used for new conversations that name no profile.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UpstreamProfileQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loaded_endpoint: dict[str, object] | None = None  # None: not saved yet, nothing to compare
        self._api_key_set = False
        self.key_cleared_on_save = False
        self.key_cleared_fields: list[str] = []  # which KEY_BOUND_FIELDS changed, when the last save cleared it

    @classmethod
    def from_db(cls, db, field_names, values):
        profile = super().from_db(db, field_names, values)
        profile._remember_endpoint()
        return profile

    def __str__(self) -> str:
        return self.name

    def set_api_key(self, plaintext: str) -> None:
        self.api_key_encrypted = encrypt_secret(plaintext)
        self.api_key_last4 = plaintext[-4:] if plaintext else ""
        self._api_key_set = True

    def endpoint_changed(self, fields: Iterable[str] = KEY_BOUND_FIELDS) -> list[str]:
        """The key-bound fields (of `fields`) that differ from what was loaded or last saved."""
        if self._loaded_endpoint is None:
            return []
        return [name for name in fields if name in self._loaded_endpoint
                and getattr(self, name) != self._loaded_endpoint[name]]

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        changed = self.endpoint_changed(KEY_BOUND_FIELDS if update_fields is None else
                                        [f for f in KEY_BOUND_FIELDS if f in update_fields])
        self.key_cleared_on_save, self.key_cleared_fields = False, []
        if changed and not self._api_key_set and self.api_key_encrypted:
            self.api_key_encrypted, self.api_key_last4 = "", ""
            self.key_cleared_on_save, self.key_cleared_fields = True, changed
        if changed and update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "api_key_encrypted", "api_key_last4"}
        super().save(*args, **kwargs)
        self._remember_endpoint(kwargs.get("update_fields"))

    def refresh_from_db(self, *args, **kwargs) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._remember_endpoint()

    def _remember_endpoint(self, saved: Iterable[str] | None = None) -> None:
        """What the row now holds (`saved`: only these fields were written)."""
        # Deferred fields are not compared (reading them would query); a copy, since JSON values are mutable.
        names = set(KEY_BOUND_FIELDS if saved is None else saved)
        snapshot = {} if saved is None or self._loaded_endpoint is None else self._loaded_endpoint
        snapshot.update({name: copy.deepcopy(self.__dict__[name]) for name in KEY_BOUND_FIELDS
                         if name in names and name in self.__dict__})
        self._loaded_endpoint = snapshot
        if saved is None or "api_key_encrypted" in names:
            self._api_key_set = False

    def get_api_key(self) -> str:
        """The decrypted key: only the upstream client may call this."""
        return decrypt_secret(self.api_key_encrypted)

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)

    def usable_by(self, user) -> bool:
        if not self.enabled:
            return False
        return self.available_to_all or user.is_staff or self.allowed_users.filter(pk=user.pk).exists()

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


class NewConversationRead:
    """`profile_for_new_conversation` as one statement written once per database (models/rows.py). `staff` and
    `user` are its parameters (the user's is_staff and pk) or, inside a larger statement, the columns that hold
    them (access.py joins it to a token's user)."""

    def __init__(self, connection, *, staff: str = "%s", user: str = "%s") -> None:
        quote = connection.ops.quote_name
        self.profile = ModelColumns(UpstreamProfile, "p", connection)
        allowed = UpstreamProfile._meta.get_field("allowed_users")
        pk = quote(UpstreamProfile._meta.pk.column)
        self.sql = (
            f"SELECT {self.profile.sql} FROM {quote(UpstreamProfile._meta.db_table)} p"
            f" WHERE p.{quote('enabled')} AND (p.{quote('available_to_all')} OR {staff} OR EXISTS (SELECT 1"
            f" FROM {quote(allowed.m2m_db_table())} a WHERE a.{quote(allowed.m2m_column_name())} = p.{pk}"
            f" AND a.{quote(allowed.m2m_reverse_name())} = {user}))"
            f" ORDER BY p.{quote('is_default')} DESC, p.{quote('name')} ASC LIMIT 1"
        )


def profile_for_new_conversation(user) -> UpstreamProfile | None:
    """The profile a new conversation of `user` gets when it names none: the default profile if it is enabled
    and `usable_by` the user, else the first (by name) that is; None when none is.

    One statement: every new gateway socket reads it (relay/warm.py opens its upstream socket ahead)."""
    read, row = read_one(UpstreamProfile, NewConversationRead, [bool(user.is_staff), user.pk])
    return read.profile.instance(row) if row is not None else None


class ModelPrice(models.Model):
    """What a model costs, per million tokens: staff keep it in the admin; usage pages estimate cost from it."""

    model = models.CharField(max_length=100, unique=True, help_text="As responses name it, e.g. gpt-5.5.")
    input_per_million = models.DecimalField("input, per 1M tokens", max_digits=12, decimal_places=4)
    cached_input_per_million = models.DecimalField("cached input, per 1M tokens", max_digits=12, decimal_places=4)
    output_per_million = models.DecimalField("output, per 1M tokens", max_digits=12, decimal_places=4)
    currency = models.CharField(max_length=3, default="USD")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model
