"""Prometheus metrics of one swarm-network service (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ServiceMetrics:
    """The service's counters and histograms, in a registry of their own."""

    def __init__(self, site: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"registry": self.registry}
        self.syncs = Counter("swarm_syncs", "Syncs finished, by outcome (done, failed).", ["outcome"], **labels)
        self.rounds_completed = Counter(
            "swarm_rounds_completed", "Rounds whose merged model this site fetched and verified.", **labels
        )
        self.rounds_led = Counter("swarm_rounds_led", "Rounds this site merged and published as leader.", **labels)
        self.sync_seconds = Histogram(
            "swarm_sync_seconds", "Wall time of one sync, submit to merged model.", buckets=_LATENCY_BUCKETS, **labels
        )
        self.merge_seconds = Histogram(
            "swarm_merge_seconds",
            "Leader's fetch, verify, merge and publish time.",
            buckets=_LATENCY_BUCKETS,
            **labels,
        )
        self.bytes_sent = Counter("swarm_bytes_sent", "Blob bytes served to peers and to the callback.", **labels)
        self.bytes_received = Counter(
            "swarm_bytes_received", "Blob bytes received from the callback and from peers.", **labels
        )
        self.failovers = Counter("swarm_failovers", "Failovers this site performed on a late leader.", **labels)
        self.rounds_abandoned = Counter(
            "swarm_rounds_abandoned",
            "Rounds this site waited on that were abandoned (no contributor could merge them); it submitted again.",
            **labels,
        )
        self.rejected_blobs = Counter(
            "swarm_rejected_blobs", "Contributions or uploads refused, by reason.", ["reason"], **labels
        )
        self.dp_epsilon = Gauge(
            "swarm_site_dp_epsilon",
            "Differential privacy: the epsilon this site has spent in a task (at the delta of "
            "swarm_site_dp_delta), as its callback reported with its latest sync.",
            ["task", "site"],
            **labels,
        )
        self.dp_delta = Gauge(
            "swarm_site_dp_delta",
            "Differential privacy: the delta of swarm_site_dp_epsilon.",
            ["task", "site"],
            **labels,
        )
        self.site = site

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict:
        """The counters' current values, for /v1/status."""
        out: dict = {}
        for metric in self.registry.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = sample.name.removeprefix("swarm_").removesuffix("_total")
                    if sample.labels:
                        key += "_" + "_".join(sample.labels.values())
                    out[key] = sample.value
        return out
