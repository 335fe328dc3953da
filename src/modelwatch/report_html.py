"""report.html: the batch report for people, rendered from report.json's dict.

One self-contained page: inline CSS and SVG, no script, no font or image fetched from
anywhere, and a Content-Security-Policy that forbids them, so the page opens the same
from S3, from the local cloud's output folder or from an email attachment. Its only
links are relative, to the batch's own siblings (report.json, predictions.csv.gz).

Every value from the report is escaped: keys, column names, cell values and reasons
are user data. ``render_report_html`` is a pure function of the report, so the page
can be regenerated from any stored report.json.

Sections, top to bottom: status (and the reason when the batch was not scored);
metrics against the reference (baseline.json's held-out metrics) and the quality
alarm's threshold; estimated vs realized (any ``estimate`` key, rendered as it is);
drift per feature, each with the reference and batch distributions drawn small;
data-quality findings; the first invalid rows; notes and timings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

# Rows of the invalid-row table; report.json lists up to 100.
MAX_INVALID_ROWS_SHOWN = 20
# The small distribution drawings.
_CHART_WIDTH = 180
_CHART_HEIGHT = 44
_CHART_GAP = 1.0
_ABOVE = ("GreaterThanThreshold", "GreaterThanOrEqualToThreshold")
# Inline styles and the page's own SVG only: no script, font, image or frame loads.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2433;
background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
.status{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff;margin-right:8px}
.status-ok{background:#1a7f37}.status-rejected{background:#b35900}.status-failed{background:#c62828}
.reason{background:#fff4e5;border-left:4px solid #b35900;padding:10px 14px;margin:12px 0;white-space:pre-wrap}
.failed .reason{background:#fdecea;border-color:#c62828}
.meta{color:#4a5468}.meta span{margin-right:12px;white-space:nowrap}.summary{font-size:15px}
table{border-collapse:collapse;background:#fff;width:100%;margin:6px 0}
th,td{border:1px solid #e1e4ea;padding:4px 8px;text-align:left;vertical-align:middle}
th{background:#eef0f4;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drifted td{background:#fff1f0}.breach{color:#c62828;font-weight:600}.okay{color:#1a7f37}
.legend svg{vertical-align:middle}.small{color:#4a5468;font-size:12px}
.links a{margin-right:18px}code{background:#eef0f4;padding:0 3px;border-radius:3px}
"""
REFERENCE_COLOUR = "#9aa4b5"
BATCH_COLOUR = "#2f6fde"
DRIFTED_COLOUR = "#d93025"


def _text(value: Any) -> str:
    return escape(str(value), quote=True)


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return _text(value)
        if abs(value) < 10 ** -(digits - 1) or abs(value) >= 10**6:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}f}" if abs(value) < 10 else f"{value:,.2f}"
    return _text(value)


def _percent(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{100 * value:.1f}%"


def _cell(value: Any, numeric: bool = False) -> str:
    return f'<td class="num">{_number(value)}</td>' if numeric else f"<td>{_text(value)}</td>"


def _table(headers: Iterable[str], rows: Iterable[str], css_class: str = "") -> str:
    head = "".join(f"<th>{_text(header)}</th>" for header in headers)
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# -------------------------------------------------------------------- distributions


def distribution_svg(
    labels: list[str], reference: list[float], batch: list[float], *, drifted: bool = False, title: str = ""
) -> str:
    """Paired bars per bin, reference (grey) beside batch (blue, red when drifted); each
    bar's tooltip names its bin and share. Scaled to the tallest bar of either side."""
    bins = len(labels)
    if bins == 0 or len(reference) != bins or len(batch) != bins:
        return ""
    tallest = max([*reference, *batch, 1e-12])
    slot = _CHART_WIDTH / bins
    bar = max((slot - 2 * _CHART_GAP) / 2, 0.5)
    colour = DRIFTED_COLOUR if drifted else BATCH_COLOUR
    shapes = []
    for index, (label, before, after) in enumerate(zip(labels, reference, batch, strict=True)):
        x = index * slot + _CHART_GAP
        for offset, share, fill, side in (
            (0.0, before, REFERENCE_COLOUR, "reference"),
            (bar, after, colour, "batch"),
        ):
            height = (_CHART_HEIGHT - 2) * share / tallest
            shapes.append(
                f'<rect x="{x + offset:.1f}" y="{_CHART_HEIGHT - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{fill}">'
                f"<title>{_text(label)}: {side} {_percent(share)}</title></rect>"
            )
    label = _text(title or "reference and batch distributions")
    baseline = _CHART_HEIGHT - 0.5
    return (
        f'<svg class="distribution" role="img" aria-label="{label}" width="{_CHART_WIDTH}" '
        f'height="{_CHART_HEIGHT}" viewBox="0 0 {_CHART_WIDTH} {_CHART_HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="0" y1="{baseline}" x2="{_CHART_WIDTH}" y2="{baseline}" stroke="#c3c9d4"/>'
        f"{''.join(shapes)}</svg>"
    )


def _bin_labels(detail: Mapping[str, Any]) -> list[str]:
    if detail.get("type") == "categorical":
        return [str(category) for category in detail.get("categories", [])]
    edges = [_number(edge) for edge in detail.get("edges", [])]
    if not edges:
        return ["all values"] if detail.get("proportions") else []
    return [
        f"≤ {edges[0]}",
        *(f"{low} – {high}" for low, high in zip(edges, edges[1:], strict=False)),
        f"> {edges[-1]}",
    ]


def _distribution_of(detail: Mapping[str, Any], title: str) -> str:
    """The detail's value bins, plus a "missing" bin when either side has missing values,
    each side scaled to all its rows (as PSI sees them)."""
    labels = _bin_labels(detail)
    batch = [float(share) for share in detail.get("proportions", [])]
    reference = [float(share) for share in detail.get("baseline_proportions", [])]
    missing, reference_missing = detail.get("missing_bin_rate"), detail.get("baseline_missing_bin_rate")
    if (
        isinstance(missing, int | float)
        and isinstance(reference_missing, int | float)
        and (missing or reference_missing)
    ):
        batch = [share * (1 - missing) for share in batch] + [float(missing)]
        reference = [share * (1 - reference_missing) for share in reference] + [float(reference_missing)]
        labels = [*labels, "missing"]
    return distribution_svg(labels, reference, batch, drifted=bool(detail.get("drifted")), title=title)


# -------------------------------------------------------------------- sections


def _header(report: Mapping[str, Any]) -> str:
    status = str(report.get("status", "unknown"))
    batch = report.get("batch") or {}
    model = report.get("model") or {}
    key = batch.get("key", "")
    facts = [
        ("model", f"{model.get('name', '?')} {model.get('version', '')}".strip()),
        ("event time", report.get("event_time")),
        ("uploaded", report.get("uploaded_at")),
        ("processed", report.get("processed_at")),
        ("object version", batch.get("version_id") or None),
    ]
    spans = " ".join(f"<span>{_text(name)}: <b>{_text(value)}</b></span>" for name, value in facts if value)
    parts = [
        f'<h1><span class="status status-{_text(status)}">{_text(status)}</span>{_text(key)}</h1>',
        f'<p class="meta">{spans}</p>',
    ]
    if status == "ok":
        coverage = report.get("label_coverage")
        summary = _summary(report)
        if summary:
            parts.append(f"<p class='summary'>{summary}</p>")
        parts.append(
            '<p class="meta">'
            f"<span>rows read: <b>{_number(report.get('rows'))}</b></span>"
            f"<span>scored: <b>{_number(report.get('rows_scored'))}</b></span>"
            f"<span>invalid: <b>{_number(report.get('rows_invalid'))}</b></span>"
            f"<span>labeled: <b>{_number(report.get('labeled_rows'))}</b> ({_percent(coverage)})</span>"
            "</p>"
        )
    else:
        what = "rejected: bad input" if status == "rejected" else "failed: a defect in modelwatch"
        parts.append(
            f'<div class="reason"><b>{_text(what)}</b> (<code>{_text(report.get("code", ""))}</code>)\n'
            f"{_text(report.get('reason', ''))}</div>"
        )
    return "".join(parts)


def _summary(report: Mapping[str, Any]) -> str:
    """One line: the alarm's metric against its threshold, and how many features drifted."""
    pieces = []
    alarm: Mapping[str, Any] = (report.get("reference") or {}).get("quality_alarm") or {}
    value = (report.get("metrics") or {}).get(alarm.get("metric"))
    threshold = alarm.get("threshold")
    if isinstance(value, int | float) and isinstance(threshold, int | float):
        verdict = _threshold_verdict(float(value), float(threshold), str(alarm.get("comparison", "")))
        pieces.append(f"{_text(alarm['metric'])} <b>{_number(value)}</b>, {verdict} (QualityAlarm)")
    features = (report.get("drift") or {}).get("features") or []
    if features:
        drifted = [str(detail.get("name")) for detail in features if detail.get("drifted")]
        named = f": {_text(', '.join(drifted))}" if drifted else ""
        pieces.append(f"<b>{len(drifted)}</b> of {len(features)} features drifted{named}")
    return " · ".join(pieces)


def _links(report: Mapping[str, Any]) -> str:
    # Relative: the page's siblings, wherever the folder is (S3, the local output folder).
    links = ['<a href="report.json">report.json</a>']
    outputs = report.get("outputs") or {}
    if "predictions" in outputs:
        links.insert(0, '<a href="predictions.csv.gz">predictions.csv.gz</a>')
    located = "".join(
        f"<br><span class='small'>{_text(name)}: <code>{_text(uri)}</code></span>"
        for name, uri in outputs.items()
    )
    return f'<p class="links">{"".join(links)}{located}</p>'


def _threshold_verdict(value: float, threshold: float, comparison: str) -> str:
    breaches = {
        "GreaterThanThreshold": value > threshold,
        "GreaterThanOrEqualToThreshold": value >= threshold,
        "LessThanThreshold": value < threshold,
        "LessThanOrEqualToThreshold": value <= threshold,
    }.get(comparison)
    if breaches is None:
        return ""
    word = ("over" if comparison in _ABOVE else "under") if breaches else "within"
    css = "breach" if breaches else "okay"
    return f'<span class="{css}">{_text(word)} {_number(threshold)}</span>'


def _metrics(report: Mapping[str, Any]) -> str:
    metrics: Mapping[str, Any] = report.get("metrics") or {}
    reference = report.get("reference") or {}
    reference_metrics: Mapping[str, Any] = reference.get("metrics") or {}
    alarm: Mapping[str, Any] = reference.get("quality_alarm") or {}
    withheld = report.get("quality_metrics_withheld")
    parts = ["<h2 id='metrics'>Metrics</h2>"]
    if withheld:
        parts.append(f"<p>{_text(withheld)}</p>")
    if not metrics:
        if not withheld:
            parts.append("<p>No quality metric for this batch.</p>")
        return "".join(parts)
    rows = []
    for name, value in metrics.items():
        before = reference_metrics.get(name)
        change = (
            value - before if isinstance(value, int | float) and isinstance(before, int | float) else None
        )
        verdict = ""
        if (
            name == alarm.get("metric")
            and isinstance(value, int | float)
            and isinstance(alarm.get("threshold"), int | float)
        ):
            verdict = _threshold_verdict(
                float(value), float(alarm["threshold"]), str(alarm.get("comparison", ""))
            )
        rows.append(
            f"<tr><td>{_text(name)}</td>{_cell(value, True)}{_cell(before, True)}"
            f'<td class="num">{"–" if change is None else f"{change:+.4f}"}</td><td>{verdict}</td></tr>'
        )
    parts.append(_table(["metric", "this batch", "reference", "change", "alarm threshold"], rows))
    if alarm:
        parts.append(
            f"<p class='small'>QualityAlarm watches {_text(alarm.get('metric'))} "
            f"({_text(alarm.get('comparison'))} {_number(alarm.get('threshold'))}) on the row-weighted "
            "average of each period, not on one batch. Reference: the model's held-out data when it "
            "was built.</p>"
        )
    return "".join(parts)


def _value_rows(value: Any, prefix: str = "") -> list[str]:
    """A nested dict or list as (path, value) rows, for sections whose shape may change."""
    if isinstance(value, Mapping):
        return [row for key, item in value.items() for row in _value_rows(item, f"{prefix}{key}.")]
    if isinstance(value, list) and any(isinstance(item, Mapping | list) for item in value):
        return [row for index, item in enumerate(value) for row in _value_rows(item, f"{prefix}{index}.")]
    shown = ", ".join(_number(item) for item in value) if isinstance(value, list) else _number(value)
    return [f"<tr><td>{_text(prefix.rstrip('.'))}</td><td class='num'>{shown}</td></tr>"]


def _estimate(report: Mapping[str, Any]) -> str:
    """Estimated vs realized quality: its own section is yet to be designed, so whatever the
    report's ``estimate`` holds is shown as it is, path by path."""
    if "estimate" not in report:
        return ""
    rows = _value_rows(report["estimate"])
    return "<h2 id='estimate'>Estimated vs realized</h2>" + _table(["field", "value"], rows)


def _drift_row(detail: Mapping[str, Any], threshold: Any) -> str:
    name = str(detail.get("name", ""))
    drifted = bool(detail.get("drifted"))
    psi = detail.get("psi")
    over = isinstance(psi, int | float) and isinstance(threshold, int | float) and psi > threshold
    psi_cell = f'<td class="num{" breach" if over else ""}">{_number(psi)}</td>'
    return (
        f'<tr class="{"drifted" if drifted else ""}"><td>{_text(name)}</td>'
        f"<td>{_text(detail.get('type', ''))}</td>"
        f"{psi_cell}<td>{_text(detail.get('test', ''))} {_number(detail.get('statistic'))}</td>"
        f"{_cell(detail.get('p_value_adjusted', detail.get('p_value')), True)}"
        f"<td class='num'>{_percent(detail.get('missing_rate'))} / "
        f"{_percent(detail.get('baseline_missing_rate'))}</td>"
        f"<td>{'yes' if drifted else 'no'}</td>"
        f"<td>{_distribution_of(detail, f'{name}: reference and batch distributions')}</td></tr>"
    )


def _drift(report: Mapping[str, Any]) -> str:
    drift: Mapping[str, Any] = report.get("drift") or {}
    if not drift:
        return ""
    parts = ["<h2 id='drift'>Drift against the training baseline</h2>"]
    if "skipped" in drift:
        return parts[0] + f"<p>{_text(drift['skipped'])}</p>"
    threshold = drift.get("threshold")
    if drift.get("message"):
        parts.append(f"<p>{_text(drift['message'])}</p>")
    parts.append(
        "<p class='small legend'>PSI over the baseline's bins, drifted when PSI &gt; "
        f"{_number(threshold)} and the {_text(drift.get('adjustment', ''))}-adjusted p-value &lt; "
        f"{_number(drift.get('significance_level'))}. "
        f"Bars: <span style='color:{REFERENCE_COLOUR}'>■</span> reference, "
        f"<span style='color:{BATCH_COLOUR}'>■</span> this batch "
        f"(<span style='color:{DRIFTED_COLOUR}'>■</span> when drifted); hover a bar for its bin.</p>"
    )
    headers = [
        "feature",
        "type",
        "PSI",
        "test statistic",
        "adjusted p",
        "missing (batch / ref.)",
        "drifted",
        "distribution",
    ]
    rows = [_drift_row(detail, threshold) for detail in drift.get("features", [])]
    prediction: Mapping[str, Any] = drift.get("prediction") or {}
    basis = prediction.get("basis")
    if basis and isinstance(prediction.get(basis), Mapping):
        detail = {**prediction[basis], "name": f"prediction ({basis})", "drifted": prediction.get("drifted")}
        detail["p_value_adjusted"] = prediction.get("p_value")
        rows.append(_drift_row(detail, threshold))
    parts.append(_table(headers, rows, "drift"))
    return "".join(parts)


def _data_quality(report: Mapping[str, Any]) -> str:
    findings = report.get("data_quality") or []
    if not findings:
        return (
            "<h2 id='data-quality'>Data quality</h2><p>No finding.</p>"
            if report.get("status") == "ok"
            else ""
        )
    rows = [
        f"<tr><td>{_text(finding.get('feature_name') or '')}</td>"
        f"<td>{_text(finding.get('constraint_check_type', ''))}</td>"
        f"<td>{_text(finding.get('description', ''))}</td></tr>"
        for finding in findings
    ]
    return "<h2 id='data-quality'>Data quality</h2>" + _table(["feature", "check", "finding"], rows)


def _invalid_rows(report: Mapping[str, Any]) -> str:
    details = report.get("details") or {}
    listed = report.get("invalid_rows") or details.get("invalid_rows") or []
    by_reason: Mapping[str, int] = report.get("invalid_by_reason") or details.get("invalid_by_reason") or {}
    if not listed:
        return ""
    total = report.get("rows_invalid", sum(by_reason.values()) if by_reason else len(listed))
    parts = [
        "<h2 id='invalid-rows'>Invalid rows</h2>",
        f"<p>{_number(total)} invalid row(s); the first {min(len(listed), MAX_INVALID_ROWS_SHOWN)} are shown "
        "(report.json lists up to 100). Rows count from 1 after the header.</p>",
    ]
    if by_reason:
        parts.append(
            _table(
                ["reason", "rows"],
                [f"<tr>{_cell(reason)}{_cell(count, True)}</tr>" for reason, count in by_reason.items()],
            )
        )
    rows = [
        f"<tr>{_cell(row.get('row'), True)}{_cell(row.get('column') or '')}"
        f"{_cell('' if row.get('value') is None else row.get('value'))}"
        f"{_cell(row.get('reason', ''))}</tr>"
        for row in listed[:MAX_INVALID_ROWS_SHOWN]
    ]
    parts.append(_table(["row", "column", "value", "reason"], rows))
    return "".join(parts)


def _notes(report: Mapping[str, Any]) -> str:
    notes = list(report.get("notes") or [])
    if report.get("event_time_source"):
        notes.insert(0, f"event time from the {report['event_time_source']}")
    if report.get("live") is False:
        notes.append("nothing was published to CloudWatch for this batch (see the note above)")
    timings: Mapping[str, Any] = report.get("timings_ms") or {}
    parts = []
    if notes:
        parts.append(
            "<h2 id='notes'>Notes</h2><ul>" + "".join(f"<li>{_text(note)}</li>" for note in notes) + "</ul>"
        )
    if timings:
        published = ", ".join(report.get("metrics_published") or [])
        spans = " · ".join(
            f"{_text(name.removesuffix('_ms'))} {float(ms):,.0f} ms"
            for name, ms in timings.items()
            if isinstance(ms, int | float)
        )
        parts.append(
            f"<p class='small'>Timings: {spans}. "
            f"Published to CloudWatch: {_text(published or 'nothing')}.</p>"
        )
    return "".join(parts)


def render_report_html(report: Mapping[str, Any]) -> str:
    """The whole page for one report.json dict (any status)."""
    batch = report.get("batch") or {}
    status = str(report.get("status", "unknown"))
    title = f"modelwatch {status}: {batch.get('key', '')}"
    body = "".join(
        [
            _header(report),
            _links(report),
            _metrics(report) if status == "ok" else "",
            _estimate(report),
            _drift(report),
            _data_quality(report),
            _invalid_rows(report),
            _notes(report),
        ]
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        # No script, no remote font or image can load, whatever a value might smuggle in.
        f"<meta http-equiv='Content-Security-Policy' content=\"{CONTENT_SECURITY_POLICY}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head>"
        f"<body class='{_text(status)}'><main>{body}"
        "<p class='small'>Written by modelwatch beside report.json, from the same data.</p>"
        "</main></body></html>\n"
    )
