"""The relay core: one client socket relayed to its conversation's upstream Responses socket.

* session.py: `RelaySession`, a client socket's relay, and its two faces (`BROWSER`, `GATEWAY`): where
  a client frame is validated and a `response.create` is checked, written and sent;
* link.py: the upstream socket's life (open, read, close); stream.py: what comes back, forwarded and
  queued for the recorder; lanes.py: which request an upstream event belongs to; lineage.py: which
  response continues which, as far as the socket has seen;
* recovery.py: when a request is replayed from the records instead of continued (a lost cache, the
  60-minute limit); context.py: what the relay reads from the database before it streams;
* ownership.py: the stored ids a client names, checked against its user's records; limits.py: the
  per-user limits; errors.py: the relay's own `error` events; refusals.py: how refusals are recorded;
  faces.py: what the browser and the gateway face each fill in and are told; stopping.py: a browser's
  Stop.
"""

from .context import AttachRefused, ConversationView, conversation_for_socket, history_event, settings_for_socket
from .lanes import Ticket
from .session import BROWSER, GATEWAY, Face, RelaySession, open_connection_pks
from .stopping import STOP_CONTROL, stop_response

__all__ = [
    "RelaySession", "Face", "BROWSER", "GATEWAY", "open_connection_pks", "Ticket", "AttachRefused",
    "ConversationView", "conversation_for_socket", "history_event", "settings_for_socket", "STOP_CONTROL",
    "stop_response",
]
