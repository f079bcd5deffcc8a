"""Security tests use the relay's fixtures: the real ASGI app, the real simulator, real databases."""

from tests.relay.conftest import (  # noqa: F401 (fixtures)
    close_db_connections,
    conversation_of,
    no_idle_grace,
    open_browser,
    open_gateway,
    profile,
    sim,
    simulator_config,
)
