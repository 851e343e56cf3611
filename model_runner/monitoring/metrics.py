"""The served-traffic recorder's Prometheus metrics, registered in the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ServedMetrics:
    def __init__(self, registry: CollectorRegistry):
        r = registry
        self.recorded = Counter(
            "tweetpulse_served_samples_recorded",
            "Sampled predictions written to Postgres",
            ["task"],
            registry=r,
        )
        self.dropped = Counter(
            "tweetpulse_served_samples_dropped",
            "Sampled predictions not written: the queue was full or the database failed",
            ["reason"],
            registry=r,
        )
        self.deleted = Counter(
            "tweetpulse_served_samples_deleted",
            "Sampled predictions deleted after the retention period",
            registry=r,
        )
        self.pending = Gauge(
            "tweetpulse_served_samples_pending",
            "Sampled predictions waiting in memory to be written",
            registry=r,
        )
        self.class_share = Gauge(
            "tweetpulse_served_class_share",
            "Share of each class among this replica's last served predictions (rolling window)",
            ["task", "label"],
            registry=r,
        )
        self.window_size = Gauge(
            "tweetpulse_served_window_predictions",
            "Predictions in this replica's rolling window behind the class-share gauges",
            ["task"],
            registry=r,
        )
        self.mean_confidence = Gauge(
            "tweetpulse_served_mean_confidence",
            "Mean top score of this replica's last served predictions (rolling window)",
            ["task"],
            registry=r,
        )
        self.class_distance = Gauge(
            "tweetpulse_served_class_distance",
            "Drift of the served class distribution: total variation distance (0..1) between the rolling"
            " window's class shares and the task's training data",
            ["task"],
            registry=r,
        )
        for reason in ("queue_full", "database"):
            self.dropped.labels(reason)
