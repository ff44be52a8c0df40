"""The hub-metrics exporter (roles/jupyterhub/files/jhs_hub_metrics.py): JupyterHub's own histograms (the real
jupyterhub.metrics objects, as the hub serves them at /hub/metrics) turned into CloudWatch statistics, published to
the local endpoint. Its run against a real hub is in the lab (tests/lab/test_site.py, the dashboard test)."""
from __future__ import annotations

import datetime as dt
import math
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "roles" / "jupyterhub" / "files"))

import jhs_hub_metrics as hm  # noqa: E402
from jupyterhub import metrics  # noqa: E402  (requirements.txt pins the hub image's version)
from prometheus_client import REGISTRY, generate_latest  # noqa: E402


def served() -> str:
    """What /hub/metrics answers: the hub's registry in Prometheus' text format."""
    return generate_latest(REGISTRY).decode()


def api(seconds, handler="jupyterhub.apihandlers.users.UserListAPIHandler", code="200"):
    metrics.REQUEST_DURATION_SECONDS.labels(method="GET", handler=handler, code=code).observe(seconds)


def test_what_the_hub_counted_between_two_reads_becomes_each_metrics_statistics():
    before = hm.parse(served())
    metrics.SERVER_SPAWN_DURATION_SECONDS.labels(status="success").observe(1.2)
    metrics.SERVER_SPAWN_DURATION_SECONDS.labels(status="success").observe(3.4)
    metrics.SERVER_SPAWN_DURATION_SECONDS.labels(status="failure").observe(60)   # a failed spawn is not a duration
    for s in (0.004, 0.02, 0.3):
        api(s)
    api(0.05, handler="jupyterhub.handlers.pages.HomeHandler")   # a page, not the API
    stats = hm.changes(before, hm.parse(served()))
    spawn, latency = stats["SpawnDuration"], stats["HubApiLatency"]
    assert spawn["SampleCount"] == 2 and spawn["Sum"] == pytest.approx(4.6)
    # extremes are the bounds of the buckets that gained a spawn (JupyterHub's: ..., 1, 2, 3, 5, ...)
    assert spawn["Minimum"] <= 1.2 and spawn["Maximum"] >= 3.4
    assert spawn["Minimum"] == 1.0 and spawn["Maximum"] == 5.0
    assert latency["SampleCount"] == 3 and latency["Sum"] == pytest.approx(0.324)
    assert latency["Minimum"] <= 0.004 and latency["Maximum"] >= 0.3


def test_the_first_read_and_a_quiet_interval_publish_nothing():
    now = hm.parse(served())
    assert hm.changes(None, now) == {}
    assert hm.changes(now, hm.parse(served())) == {}


def test_a_hub_restart_starts_the_counts_over_from_zero():
    before = {"SpawnDuration": hm.Histogram(10, 20.0, {1.0: 2, 5.0: 10, math.inf: 10}),
              "HubApiLatency": hm.Histogram()}
    after = {"SpawnDuration": hm.Histogram(1, 0.8, {1.0: 1, 5.0: 1, math.inf: 1}), "HubApiLatency": hm.Histogram()}
    assert hm.changes(before, after) == {"SpawnDuration": {"SampleCount": 1, "Sum": 0.8, "Minimum": 0.0,
                                                           "Maximum": 1.0}}


def test_an_observation_past_the_last_bucket_keeps_the_maximum_at_or_above_the_mean():
    h = hm.Histogram(1, 900.0, {300.0: 0, math.inf: 1})
    assert h.statistics() == {"SampleCount": 1, "Sum": 900.0, "Minimum": 300.0, "Maximum": 900.0}


@pytest.mark.parametrize("url, verified", [("https://127.0.0.1:443/hub/metrics", False),
                                           ("https://localhost/hub/metrics", False),
                                           ("https://hub.example.org/hub/metrics", True)])
def test_only_a_loopback_url_goes_unverified(url, verified):
    assert hm.loopback(url) is not verified


def test_a_pass_publishes_the_interval_to_cloudwatch_with_the_clusters_dimension(boto, tmp_path):
    cw, cluster = boto("cloudwatch"), f"hm-{uuid.uuid4().hex[:8]}"
    token = tmp_path / "token"
    token.write_text("read-metrics-token\n")
    asked = []

    def fetch(url, tok):
        asked.append((url, tok))
        return served()
    args = SimpleNamespace(url="https://127.0.0.1:443/hub/metrics", token_file=str(token), cluster=cluster, every=60,
                           dry_run=False)
    exporter = hm.Exporter(args, cw, fetch=fetch)
    assert exporter.step() == {}   # the baseline
    metrics.SERVER_SPAWN_DURATION_SECONDS.labels(status="success").observe(0.9)
    api(0.01)
    assert set(exporter.step()) == {"SpawnDuration", "HubApiLatency"}
    assert asked == [(args.url, "read-metrics-token")] * 2
    dims = [{"Name": "ClusterName", "Value": cluster}]
    for name, total in (("SpawnDuration", 0.9), ("HubApiLatency", 0.01)):
        listed = cw.list_metrics(Namespace=hm.NAMESPACE, MetricName=name, Dimensions=dims)["Metrics"]
        assert listed, name
        end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
        points = cw.get_metric_statistics(Namespace=hm.NAMESPACE, MetricName=name, Dimensions=dims,
                                          StartTime=end - dt.timedelta(minutes=10), EndTime=end, Period=60,
                                          Statistics=["Sum", "SampleCount"])["Datapoints"]
        assert sum(p["SampleCount"] for p in points) == 1 and sum(p["Sum"] for p in points) == pytest.approx(total)


def test_a_dry_run_publishes_nothing(boto, tmp_path):
    cw, cluster = boto("cloudwatch"), f"hm-{uuid.uuid4().hex[:8]}"
    (tmp_path / "t").write_text("x")
    args = SimpleNamespace(url="https://127.0.0.1/hub/metrics", token_file=str(tmp_path / "t"), cluster=cluster,
                           every=60, dry_run=True)
    exporter = hm.Exporter(args, cw, fetch=lambda url, tok: served())
    exporter.step()
    metrics.SERVER_SPAWN_DURATION_SECONDS.labels(status="success").observe(2)
    assert "SpawnDuration" in exporter.step()
    assert cw.list_metrics(Namespace=hm.NAMESPACE, Dimensions=[{"Name": "ClusterName", "Value": cluster}])["Metrics"] == []


def test_the_command_refuses_an_interval_under_ten_seconds():
    with pytest.raises(SystemExit, match="--every=5: at least 10 seconds"):
        hm.main(["run", "--url", "https://127.0.0.1/hub/metrics", "--token-file", "/nonexistent", "--cluster", "c",
                 "--every", "5"])
