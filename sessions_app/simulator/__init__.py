"""A protocol-faithful, offline Responses API WebSocket upstream (no Django, no database).

    from sessions_app.simulator import Simulator, SimulatorConfig

    async with Simulator(SimulatorConfig(port=0, tokens_per_second=0)) as sim:
        sim.url        # ws://127.0.0.1:<port>/v1/responses
        sim.base_url   # http://127.0.0.1:<port>/v1   (POST /responses/compact)

Modules: server.py (sockets, HTTP route), engine.py (one connection: lanes,
cache, steering, limits), turn.py (create -> stream), stream.py (the event
sequence), model.py (the deterministic answers), directives.py (/tool, /long,
…), compaction.py, codec.py, tokens.py, store.py.  Directive reference:
docs/simulator.md.
"""

from __future__ import annotations

from .server import Simulator, SimulatorConfig

__all__ = ["Simulator", "SimulatorConfig"]
