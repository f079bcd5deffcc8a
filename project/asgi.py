"""ASGI entry point: HTTP goes to Django, WebSockets to the relay consumers.

Browser sockets authenticate with the Django session and must come from an
allowed origin; the gateway socket (`/v1/responses`) authenticates with a
personal API token instead (non-browser clients send no Origin header).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from sessions_app.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_application,
    }
)
