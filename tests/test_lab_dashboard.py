"""The lab's drawing of a CloudWatch dashboard (lab/dashboard.py) against the local endpoint: each metric widget's
series read back with its statistic and label, placed on CloudWatch's grid, written as a PNG. The real dashboard,
after a spawn in the lab, is drawn by tests/lab/test_site.py."""
from __future__ import annotations

import json
import uuid

from PIL import Image

from lab import dashboard


def test_each_widgets_series_is_read_back_and_drawn_where_the_body_places_it(boto, tmp_path):
    cw, cluster = boto("cloudwatch"), f"db-{uuid.uuid4().hex[:8]}"
    dims = ["ClusterName", cluster]
    body = {"widgets": [
        {"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6, "properties": {
            "title": "Users", "region": "eu-west-1", "period": 60, "yAxis": {"left": {"label": "count", "min": 0}},
            "metrics": [["Lab/Test", "UsersRunning", *dims, {"label": "running", "stat": "Maximum"}],
                        ["Lab/Test", "SpawnsPending", *dims, {"label": "pending", "stat": "Maximum"}]]}},
        {"type": "metric", "x": 12, "y": 0, "width": 12, "height": 6, "properties": {
            "title": "Nothing yet", "region": "eu-west-1", "period": 60,
            "metrics": [["Lab/Test", "NeverPublished", *dims, {"label": "none", "stat": "Average"}]]}},
        {"type": "text", "x": 0, "y": 6, "width": 24, "height": 2, "properties": {"markdown": "notes"}}]}
    cw.put_dashboard(DashboardName=cluster, DashboardBody=json.dumps(body))
    for value in (1, 3):
        cw.put_metric_data(Namespace="Lab/Test", MetricData=[
            {"MetricName": "UsersRunning", "Value": value, "Dimensions": [{"Name": dims[0], "Value": dims[1]}]}])
    cw.put_metric_data(Namespace="Lab/Test", MetricData=[
        {"MetricName": "SpawnsPending", "Value": 0, "Dimensions": [{"Name": dims[0], "Value": dims[1]}]}])

    widgets = dashboard.read(cw, cluster, minutes=10)
    assert [(w.title, w.x, w.y, w.width, w.height) for w in widgets] == [
        ("Users", 0, 0, 12, 6), ("Nothing yet", 12, 0, 12, 6), ("text", 0, 6, 24, 2)]
    users, pending = widgets[0].series
    assert (users.label, users.stat) == ("running", "Maximum") and [v for _, v in users.points] == [3.0]
    assert (pending.label, [v for _, v in pending.points]) == ("pending", [0.0])
    assert widgets[0].unit == "count"
    assert [(s.label, s.points) for s in widgets[1].series] == [("none", [])]
    assert widgets[2].series == []

    out = tmp_path / "dashboard.png"
    size = dashboard.draw(widgets, out, "test")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == size == (24 * dashboard.UNIT, 30 + 8 * dashboard.UNIT)
        # the first series' colour is on the picture (its line or point), and the empty widget's is not drawn twice
        assert dashboard.COLOURS[0] in {c for _, c in image.getcolors(1 << 16)}
