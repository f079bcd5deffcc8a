"""The configured channel layer, exercised for real (in-memory, or Redis when REDIS_URL is set)."""

from __future__ import annotations

import asyncio

from channels.layers import get_channel_layer
from django.conf import settings


async def test_a_receive_waiting_longer_than_redis_default_timeout_still_gets_its_message():
    layer = get_channel_layer()
    channel = await layer.new_channel()

    async def send_later():
        await asyncio.sleep(6.5)  # past redis-py's 5 s default socket timeout
        await layer.send(channel, {"type": "late.message", "n": 1})

    sender = asyncio.create_task(send_later())
    message = await asyncio.wait_for(layer.receive(channel), 15)
    await sender
    assert message == {"type": "late.message", "n": 1}


def test_layer_follows_redis_url():
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    assert backend.endswith("RedisChannelLayer" if settings.REDIS_URL else "InMemoryChannelLayer")
