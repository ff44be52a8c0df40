"""The cluster's CloudWatch dashboard, drawn as a PNG from the endpoint's metric data (`python -m lab dashboard`).

The lab's endpoint stores the dashboard provisioning put (aws_cluster, templates/dashboard.json.j2) and the metrics
the scaler, the hub-metrics exporter and the Auto Scaling group publish, but has no console to show them. This reads
the dashboard's body back and draws each of its metric widgets where the body places it (CloudWatch's grid: 24
columns, rows of 6 units), each series from GetMetricData with the widget's period and the series' statistic and
label: the same picture, without AWS. Only the widget features templates/dashboard.json.j2 uses are drawn (metric
widgets, time series, a left axis label and minimum); any other widget is boxed with its type.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

UNIT = 50                  # pixels per grid unit: a 24-unit row is 1200 pixels wide
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


@dataclass
class Series:
    label: str
    stat: str
    points: list[tuple[dt.datetime, float]] = field(default_factory=list)


@dataclass
class Widget:
    title: str
    x: int
    y: int
    width: int
    height: int
    unit: str = ""
    series: list[Series] = field(default_factory=list)


def read(cloudwatch, name: str, minutes: int = 60, now: dt.datetime | None = None) -> list[Widget]:
    """The dashboard's metric widgets, each series with its data points of the last `minutes`."""
    import json
    body = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
    end = (now or dt.datetime.now(dt.timezone.utc)) + dt.timedelta(minutes=1)
    widgets = []
    for w in body.get("widgets", []):
        props = w.get("properties", {})
        widget = Widget(props.get("title", w.get("type", "")), w.get("x", 0), w.get("y", 0), w.get("width", 6),
                        w.get("height", 6), ((props.get("yAxis") or {}).get("left") or {}).get("label", ""))
        widgets.append(widget)
        if w.get("type") != "metric":
            continue
        queries = []
        for i, metric in enumerate(props.get("metrics", [])):
            options = metric[-1] if isinstance(metric[-1], dict) else {}
            namespace, metric_name, *dims = [p for p in metric if not isinstance(p, dict)]
            stat = options.get("stat", props.get("stat", "Average"))
            widget.series.append(Series(options.get("label", metric_name), stat))
            queries.append({"Id": f"m{i}", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": metric_name,
                           "Dimensions": [{"Name": dims[j], "Value": dims[j + 1]} for j in range(0, len(dims), 2)]},
                "Period": props.get("period", 60), "Stat": stat}})
        if not queries:
            continue
        result = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=end - dt.timedelta(minutes=minutes),
                                            EndTime=end)
        for r in result["MetricDataResults"]:
            series = widget.series[int(r["Id"][1:])]
            series.points = sorted(zip(r["Timestamps"], r["Values"]))
    return widgets


def _figure(value: float) -> str:
    if abs(value) >= 1 << 30:
        return f"{value / (1 << 30):.1f}G"
    if abs(value) >= 1 << 20:
        return f"{value / (1 << 20):.0f}M"
    return f"{value:.3g}"


def draw(widgets: list[Widget], path, title: str = "") -> tuple[int, int]:
    """The widgets as a PNG at path; returns its size."""
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default()
    top = 30 if title else 0
    width = 24 * UNIT
    height = top + max((w.y + w.height for w in widgets), default=1) * UNIT
    image = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(image)
    if title:
        pen.text((10, 8), title, fill="black", font=font)
    times = [t for w in widgets for s in w.series for t, _ in s.points]
    start, end = (min(times), max(times)) if times else (None, None)
    for w in widgets:
        x0, y0 = w.x * UNIT + 4, top + w.y * UNIT + 4
        x1, y1 = x0 + w.width * UNIT - 8, y0 + w.height * UNIT - 8
        pen.rectangle((x0, y0, x1, y1), outline=(200, 200, 200))
        pen.text((x0 + 8, y0 + 6), w.title, fill="black", font=font)
        # the plot, its legend below it
        px0, py0, px1, py1 = x0 + 60, y0 + 26, x1 - 12, y1 - 18 - 14 * ((len(w.series) + 2) // 3)
        pen.line((px0, py1, px1, py1), fill="black")
        pen.line((px0, py0, px0, py1), fill="black")
        values = [v for s in w.series for _, v in s.points]
        if not values:
            pen.text((px0 + 10, (py0 + py1) // 2), "no data", fill=(150, 150, 150), font=font)
        top_value = max(values, default=0) * 1.1 or 1.0
        for frac in (0, 0.5, 1):
            y = py1 - frac * (py1 - py0)
            pen.text((x0 + 6, y - 6), _figure(top_value * frac), fill=(90, 90, 90), font=font)
        if w.unit:   # the left axis' label, at the title row's right end
            pen.text((x1 - 8 - pen.textlength(w.unit, font=font), y0 + 6), w.unit, fill=(90, 90, 90), font=font)
        span = (end - start).total_seconds() if start and end and end > start else 60.0
        for i, s in enumerate(w.series):
            colour = COLOURS[i % len(COLOURS)]
            xy = [(px0 + (t - start).total_seconds() / span * (px1 - px0) if span else px0,
                   py1 - v / top_value * (py1 - py0)) for t, v in s.points]
            if len(xy) > 1:
                pen.line(xy, fill=colour, width=2)
            for x, y in xy:
                pen.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
            lx, ly = x0 + 10 + (i % 3) * ((x1 - x0) // 3), py1 + 8 + 14 * (i // 3)
            pen.rectangle((lx, ly + 2, lx + 10, ly + 10), fill=colour)
            latest = f" {_figure(s.points[-1][1])}" if s.points else " (no data)"
            pen.text((lx + 14, ly), f"{s.label} ({s.stat}){latest}", fill="black", font=font)
    if start:
        pen.text((10, height - 14), f"{start:%H:%M} to {end:%H:%M} UTC", fill=(90, 90, 90), font=font)
    image.save(path, "PNG")
    return image.size
