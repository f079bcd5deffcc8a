"""/metrics in Prometheus' text format: what the relay did, read from the database at each scrape.

Rules:

* Multi-process correct by construction: every figure but three is computed per scrape from the
  database, which all Daphne processes share, so whichever process answers a scrape reports the same
  numbers (no prometheus-client multi-process directory, no per-process counters to add up).
* The exceptions are process-local by nature: the recorder's queue depth and its batch write
  latency (recording/stats.py) live in one process's memory, and `switchboard_process_info` says which
  event loop the process runs on (event_loop.py). They carry a ``process`` label (the
  process id of process.py) so a scrape says which process it describes; scrape every process to see
  them all.
* Nothing here is on the relay's hot path: the relay writes no extra rows for metrics, and the
  queries run only when someone scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .event_loop import event_loop_in_use
from .live.sockets import lease
from .models import ClientSocket, ErrorEvent, ResponseRecord, UpstreamConnection
from .process import PROCESS_ID
from .recording.recorder import queued_ops
from .recording.stats import FLUSH_SECONDS

__all__ = ["CONTENT_TYPE", "TTFT_BUCKETS", "exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds from a request's send to its first text delta.
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


def _ttft_window() -> timedelta:
    return timedelta(seconds=settings.SWITCHBOARD_METRICS_TTFT_WINDOW_SECONDS)


class DatabaseCollector(Collector):
    """Reads the records at each scrape (see the module rules)."""

    def collect(self) -> Iterator[Metric]:
        yield self._open_sockets()
        yield self._responses()
        yield self._errors()
        yield self._ttft()
        yield self._upstream_connections()
        yield self._replays()
        yield from self._this_process()

    def _open_sockets(self) -> Metric:
        family = GaugeMetricFamily(
            "switchboard_client_sockets", "Client sockets open now, by face (rows with a live heartbeat; "
            "a user without a socket limit is not counted).", labels=["face"])
        live = (ClientSocket.objects.filter(heartbeat_at__gte=timezone.now() - lease())
                .values("face").annotate(n=Count("pk")).order_by("face"))
        counts = {"browser": 0, "gateway": 0} | {row["face"]: row["n"] for row in live}
        for face, n in counts.items():
            family.add_metric([face], n)
        return family

    def _responses(self) -> Metric:
        family = GaugeMetricFamily("switchboard_responses", "Recorded responses, by status.", labels=["status"])
        counts = dict.fromkeys(ResponseRecord.Status.values, 0)
        counts |= {row["status"]: row["n"] for row in
                   ResponseRecord.objects.values("status").annotate(n=Count("pk")).order_by("status")}
        for status, n in counts.items():
            family.add_metric([status], n)
        return family

    def _errors(self) -> Metric:
        family = CounterMetricFamily(
            "switchboard_errors", "Errors recorded, by code and source (repeats of a client mistake included).",
            labels=["code", "source"])
        rows = (ErrorEvent.objects.values("code", "source").annotate(n=Sum("count"))
                .order_by("source", "code"))
        for row in rows:
            family.add_metric([row["code"], row["source"]], row["n"] or 0)
        return family

    def _ttft(self) -> Metric:
        window = _ttft_window()
        ttft = ExpressionWrapper(F("first_text_at") - F("sent_at"), output_field=DurationField())
        recent = ResponseRecord.objects.filter(sent_at__gte=timezone.now() - window, first_text_at__isnull=False,
                                               first_text_at__gte=F("sent_at")).annotate(ttft=ttft)
        figures = recent.aggregate(
            total=Count("pk"), sum=Sum("ttft"),
            **{f"le{i}": Count("pk", filter=Q(ttft__lte=timedelta(seconds=bound)))
               for i, bound in enumerate(TTFT_BUCKETS)})
        buckets = [(_bound(bound), figures[f"le{i}"]) for i, bound in enumerate(TTFT_BUCKETS)]
        buckets.append(("+Inf", figures["total"]))
        total_seconds = figures["sum"].total_seconds() if figures["sum"] is not None else 0.0
        family = HistogramMetricFamily(
            "switchboard_time_to_first_text_seconds",
            f"Time from sending a request to its first text delta, over responses sent in the last "
            f"{int(window.total_seconds())} s (a sliding window: not a counter).", labels=[])
        family.add_metric([], buckets, total_seconds)
        return family

    def _upstream_connections(self) -> Metric:
        family = GaugeMetricFamily(
            "switchboard_upstream_connections", "Upstream sockets recorded, by why they closed (open: still open).",
            labels=["close_reason"])
        counts = {reason or "open": 0 for reason in UpstreamConnection.CloseReason.values}
        for row in UpstreamConnection.objects.values("close_reason").annotate(n=Count("pk")).order_by("close_reason"):
            counts[row["close_reason"] or "open"] = row["n"]
        for reason, n in counts.items():
            family.add_metric([reason], n)
        return family

    def _replays(self) -> Metric:
        family = CounterMetricFamily(
            "switchboard_replays", "Requests the relay resent or rebuilt from records (recovery replays and "
            "resent attempts).")
        family.add_metric([], ResponseRecord.objects.filter(
            Q(origin=ResponseRecord.Origin.RECOVERY_REPLAY) | Q(supersedes__isnull=False)).count())
        return family

    def _this_process(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("switchboard_recorder_queue_depth",
                                  "Ops waiting to be written by this process's recorder.", labels=["process"])
        depth.add_metric([PROCESS_ID], queued_ops())
        yield depth
        info = InfoMetricFamily("switchboard_process", "What this process runs on (event_loop: uvloop or asyncio, "
                                "SWITCHBOARD_EVENT_LOOP).", labels=["process"])
        info.add_metric([PROCESS_ID], {"event_loop": event_loop_in_use()})
        yield info
        yield from FLUSH_SECONDS.collect()


def _bound(seconds: float) -> str:
    return repr(float(seconds))


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())


def exposition() -> bytes:
    """The scrape's body (sync: queries the database)."""
    return generate_latest(REGISTRY)
