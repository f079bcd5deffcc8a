from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from sessions_app.simulator import Simulator, SimulatorConfig

from .helpers import RawClient


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorConfig(host="127.0.0.1", port=0, tokens_per_second=0)) as simulator:
        yield simulator


@pytest_asyncio.fixture
async def client(sim: Simulator) -> AsyncIterator[RawClient]:
    async with await RawClient.open(sim.url) as raw:
        yield raw
