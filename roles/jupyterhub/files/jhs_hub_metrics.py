#!/usr/bin/env python3
"""jhs_hub_metrics: JupyterHub's own spawn and API timings into CloudWatch, for the cluster's dashboard.

JupyterHub measures every spawn and every request in Prometheus histograms, served at /hub/metrics to a token
of scope read:metrics. CloudWatch reads no Prometheus text, and the hub's figures are two histograms of one
process: no maintained Python package bridges that without a Prometheus server or the CloudWatch agent. So this
small exporter reads the text each interval and publishes what changed since its last read:

- SpawnDuration (Seconds): the successful spawns that ended in the interval;
- HubApiLatency (Seconds): the hub's REST API requests (handlers of jupyterhub.apihandlers) answered in it.

Each as StatisticValues: SampleCount and Sum exact; Minimum and Maximum the bounds of the lowest and highest
histogram buckets that gained an observation (JupyterHub keeps no exact extremes). An interval with no spawn or
no request publishes nothing for that metric (the dashboard shows a gap, not a zero). Namespace JupyterHubSwarm,
dimension ClusterName, as the scaler's metrics (docs/autoscaling.md, docs/monitoring.md).

It runs in its own container on the manager's host network, so it calls AWS with the instance role's credentials
as the scaler does (the hub's container never holds AWS credentials), and reads /hub/metrics through the proxy on
loopback. The certificate there is for the hub's public name, so on a loopback URL it is not verified: the
traffic never leaves the host. The first read only sets the baseline (what the hub counted before it is not of
this interval); a hub restart sets the counts back to zero, which the next read takes as a new baseline of zero.

    jhs_hub_metrics.py run --url https://127.0.0.1:443/hub/metrics --token-file F --cluster NAME [--every 60]
                           [--region R] [--endpoint-url URL] [--once] [--dry-run]
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import signal
import ssl
import sys
import time
import urllib.parse
import urllib.request

log = logging.getLogger("jhs-hub-metrics")

NAMESPACE = "JupyterHubSwarm"   # plugins/module_utils/jhs_names.py METRICS_NAMESPACE; tests/test_names.py checks
SPAWN = "jupyterhub_server_spawn_duration_seconds"
REQUEST = "jupyterhub_request_duration_seconds"
API_HANDLERS = "jupyterhub.apihandlers."


def _spawned(labels) -> bool:
    return labels.get("status") == "success"


def _api_request(labels) -> bool:
    return labels.get("handler", "").startswith(API_HANDLERS)


# metric name in CloudWatch -> (histogram in JupyterHub's text, which of its label sets count)
METRICS = {"SpawnDuration": (SPAWN, _spawned), "HubApiLatency": (REQUEST, _api_request)}


class Histogram:
    """One histogram summed over the label sets that count: observations, their sum, cumulative bucket counts."""

    def __init__(self, count=0.0, total=0.0, buckets=None):
        self.count, self.total = count, total
        self.buckets = dict(buckets or {})   # upper bound (math.inf for +Inf) -> cumulative count

    def __sub__(self, earlier: Histogram) -> Histogram:
        return Histogram(self.count - earlier.count, self.total - earlier.total,
                         {le: n - earlier.buckets.get(le, 0.0) for le, n in self.buckets.items()})

    def statistics(self) -> dict | None:
        """CloudWatch's StatisticValues of these observations, or None when there are none."""
        if self.count <= 0:
            return None
        bounds = sorted(self.buckets)
        gained, below, lower = [], 0.0, 0.0
        for le in bounds:   # per bucket: (its lower bound, its upper bound, observations in it)
            gained.append((lower, le, self.buckets[le] - below))
            below, lower = self.buckets[le], le
        filled = [(lo, hi) for lo, hi, n in gained if n > 0]
        mean = self.total / self.count
        lowest = filled[0][0] if filled else mean
        highest = (filled[-1][1] if not math.isinf(filled[-1][1]) else filled[-1][0]) if filled else mean
        return {"SampleCount": self.count, "Sum": self.total, "Minimum": min(lowest, mean),
                "Maximum": max(highest, mean)}


def parse(text: str) -> dict[str, Histogram]:
    """The METRICS' histograms in JupyterHub's /hub/metrics text (Prometheus' exposition format)."""
    from prometheus_client.parser import text_string_to_metric_families
    wanted = {histogram: name for name, (histogram, _) in METRICS.items()}
    found = {name: Histogram() for name in METRICS}
    for family in text_string_to_metric_families(text):
        name = wanted.get(family.name)
        if name is None:
            continue
        counts = METRICS[name][1]
        h = found[name]
        for sample in family.samples:
            if not counts(sample.labels):
                continue
            if sample.name.endswith("_count"):
                h.count += sample.value
            elif sample.name.endswith("_sum"):
                h.total += sample.value
            elif sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                h.buckets[le] = h.buckets.get(le, 0.0) + sample.value
    return found


def changes(before: dict[str, Histogram] | None, now: dict[str, Histogram]) -> dict[str, dict]:
    """The statistics of what each histogram gained since before; a count that went down (a hub restart) starts
    over from zero. No statistics for the first read (before is None) or for a histogram that gained nothing."""
    if before is None:
        return {}
    out = {}
    for name, h in now.items():
        earlier = before.get(name, Histogram())
        stats = (h if h.count < earlier.count else h - earlier).statistics()
        if stats:
            out[name] = stats
    return out


def loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_metrics(url: str, token: str, timeout: float = 10) -> str:
    context = None
    if url.startswith("https:") and loopback(url):   # the hub's public certificate, reached on loopback
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return response.read().decode()


class Exporter:
    def __init__(self, args, cloudwatch, fetch=read_metrics):
        self.args, self.cloudwatch, self.fetch = args, cloudwatch, fetch
        self.before = None

    def step(self) -> dict[str, dict]:
        with open(self.args.token_file) as f:   # read each time: a rotated token is taken at the next pass
            token = f.read().strip()
        now = parse(self.fetch(self.args.url, token))
        stats = changes(self.before, now)
        self.before = now
        for name, s in stats.items():
            log.info("%s: %d in %ss, mean %.3f s, max %.3f s", name, s["SampleCount"], self.args.every,
                     s["Sum"] / s["SampleCount"], s["Maximum"])
        if stats and not self.args.dry_run:
            self.cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=[
                {"MetricName": name, "StatisticValues": s, "Unit": "Seconds",
                 "Dimensions": [{"Name": "ClusterName", "Value": self.args.cluster}]} for name, s in stats.items()])
        return stats


def run(args) -> None:
    import boto3
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(levelname).1s %(asctime)s %(name)s] %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    kw = {"region_name": args.region} | ({"endpoint_url": args.endpoint_url} if args.endpoint_url else {})
    exporter = Exporter(args, boto3.client("cloudwatch", **kw))
    log.info("%s every %ss into %s (ClusterName=%s)%s", args.url, args.every, NAMESPACE, args.cluster,
             " (dry run)" if args.dry_run else "")
    from botocore.exceptions import NoCredentialsError
    while True:
        try:
            exporter.step()
        except NoCredentialsError as e:   # none found when the client was made; a client never looks again (as the
            log.error("pass failed: %s", e)   # scaler does: a new one)
            exporter.cloudwatch = boto3.client("cloudwatch", **kw)
        except Exception as e:   # the hub restarting, AWS unavailable for a moment: the next pass reads afresh
            log.error("pass failed: %s: %s", type(e).__name__, e)
        if args.once:
            return
        time.sleep(args.every)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jhs_hub_metrics.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="publish the hub's spawn and API timings every interval")
    r.add_argument("--url", required=True, help="the hub's /hub/metrics URL")
    r.add_argument("--token-file", required=True, help="a file holding a token of scope read:metrics")
    r.add_argument("--cluster", required=True, help="the ClusterName dimension")
    r.add_argument("--every", type=int, default=60, help="seconds between reads (at least 10)")
    r.add_argument("--region", default="")
    r.add_argument("--endpoint-url", default="")
    r.add_argument("--once", action="store_true", help="one pass, then exit")
    r.add_argument("--dry-run", action="store_true", help="log only, publish nothing")
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if args.every < 10:
        raise SystemExit(f"--every={args.every}: at least 10 seconds")
    run(args)


if __name__ == "__main__":
    main()
