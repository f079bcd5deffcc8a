"""The two client faces of a relay session: the browser socket and the gateway (`/v1/responses`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from .context import CONVERSATION_METADATA_KEY, ConversationView

__all__ = ["Face", "BROWSER", "GATEWAY"]


@dataclass(frozen=True)
class Face:
    """How a client socket differs: control events and default filling. The relay logic is shared."""

    name: str
    announces: bool  # switchboard.* control events
    fills_defaults: bool  # the conversation's settings (model is always filled; see complete_create)

    def complete_create(self, raw: dict[str, Any], conversation: ConversationView) -> dict[str, Any]:
        """Fill what the client left to the conversation; strip our metadata key. Same dict if unchanged."""
        changes: dict[str, Any] = {}
        if not raw.get("model"):
            changes["model"] = conversation.model or (conversation.profile.default_model if conversation.profile
                                                      else settings.SWITCHBOARD_DEFAULT_MODEL)
        if self.fills_defaults:
            if "store" not in raw:
                changes["store"] = conversation.store
            if "instructions" not in raw and conversation.instructions:
                changes["instructions"] = conversation.instructions
            if "tools" not in raw and conversation.tools:
                changes["tools"] = conversation.tools
            if "reasoning" not in raw and conversation.reasoning_effort:
                changes["reasoning"] = {"effort": conversation.reasoning_effort}
            if "max_output_tokens" not in raw and conversation.max_output_tokens is not None:
                changes["max_output_tokens"] = conversation.max_output_tokens
            if "context_management" not in raw and conversation.compact_threshold is not None:
                changes["context_management"] = [{"type": "compaction",
                                                  "compact_threshold": conversation.compact_threshold}]
        metadata = raw.get("metadata")
        if isinstance(metadata, dict) and CONVERSATION_METADATA_KEY in metadata:
            rest = {k: v for k, v in metadata.items() if k != CONVERSATION_METADATA_KEY}
            raw = {k: v for k, v in raw.items() if k != "metadata"}
            if rest:
                raw["metadata"] = rest
        return {**raw, **changes} if changes else raw


BROWSER = Face("browser", announces=True, fills_defaults=True)
GATEWAY = Face("gateway", announces=False, fills_defaults=False)
