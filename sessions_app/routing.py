"""WebSocket routes. Browser sockets: session auth + origin check. Gateway: API token auth."""

from __future__ import annotations

from channels.routing import URLRouter

websocket_application = URLRouter([])
