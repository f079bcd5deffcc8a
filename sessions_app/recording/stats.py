"""How this process's recorder is doing: kept in memory and read by /metrics (metrics.py).

These figures are process-local (each Daphne process has its own writers), so they carry the
process id (process.py) as a label; nothing here touches the database.
"""

from __future__ import annotations

from prometheus_client import Histogram

from ..process import PROCESS_ID

__all__ = ["FLUSH_SECONDS", "flush_observed"]

# Not registered anywhere: metrics.py's collector yields its samples beside the database figures.
FLUSH_SECONDS = Histogram(
    "switchboard_recorder_flush_seconds", "How long the recorder took to write one batch (this process).",
    labelnames=["process"], registry=None,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_THIS_PROCESS = FLUSH_SECONDS.labels(PROCESS_ID)


def flush_observed(seconds: float) -> None:
    """One batch written (or given up on) in `seconds`."""
    _THIS_PROCESS.observe(seconds)
