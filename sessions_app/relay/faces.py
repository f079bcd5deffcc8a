"""The two client faces of a relay session: the browser socket and the gateway (`/v1/responses`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Face", "BROWSER", "GATEWAY"]


@dataclass(frozen=True)
class Face:
    """How a client socket differs: control events and default filling. The relay logic is shared."""

    name: str
    announces: bool  # switchboard.* control events
    fills_defaults: bool  # store, instructions, tools from the conversation (model is always filled)


BROWSER = Face("browser", announces=True, fills_defaults=True)
GATEWAY = Face("gateway", announces=False, fills_defaults=False)
