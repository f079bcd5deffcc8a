"""Shared fixtures. Tests run against real components: a real database (SQLite or
PostgreSQL, per DATABASE_URL), the real channel layer (in-memory or Redis, per
REDIS_URL) and the real simulator."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user(username="bob", password="bob-password-1")


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user(username="staff", password="staff-password-1", is_staff=True,
                                                is_superuser=True)
