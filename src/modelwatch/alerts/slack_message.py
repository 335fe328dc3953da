"""The Slack message an on-call person reads: numbers, a sparkline of recent values, links.

Pure: built from the alarm and the context already fetched, so the wording is tested
without a network.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelwatch.alerts.alarm_message import ALARM, INSUFFICIENT_DATA, OK, AlarmNotification
from modelwatch.config import RESULTS_PREFIX, AlertConfig

# Slack's documented limits: header text 150 characters, section text 3,000, field text 2,000.
HEADER_MAX_CHARS = 150
SECTION_MAX_CHARS = 3000
FIELD_MAX_CHARS = 2000

_COMPARISON_SYMBOLS = {
    # operator: (symbol when the condition holds, symbol when it does not)
    "GreaterThanThreshold": (">", "≤"),
    "GreaterThanOrEqualToThreshold": ("≥", "<"),
    "LessThanThreshold": ("<", "≥"),
    "LessThanOrEqualToThreshold": ("≤", ">"),
}
_BARS = "▁▂▃▄▅▆▇█"
_MISSING = "·"


def readable_number(value: float) -> str:
    """0.312 -> "0.312", 1234.0 -> "1,234": what a person reads aloud, not 0.31200000000000006."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def breaches(value: float, comparison: str, threshold: float) -> bool:
    return {
        "GreaterThanThreshold": value > threshold,
        "GreaterThanOrEqualToThreshold": value >= threshold,
        "LessThanThreshold": value < threshold,
        "LessThanOrEqualToThreshold": value <= threshold,
    }.get(comparison, False)


def value_against_threshold(alarm: AlarmNotification, value: float | None) -> str:
    """ "ErrorRate 0.312 > threshold 0.2": the symbol states the relation the numbers really have."""
    metric = alarm.metric.name if alarm.metric else "Value"
    unit = f" {alarm.metric.unit}" if alarm.metric and alarm.metric.unit else ""
    if value is None:
        return f"{metric}: no recent value"
    shown = f"{metric} {readable_number(value)}{unit}"
    if alarm.threshold is None or alarm.comparison not in _COMPARISON_SYMBOLS:
        return shown
    holds, fails = _COMPARISON_SYMBOLS[alarm.comparison]
    symbol = holds if breaches(value, alarm.comparison, alarm.threshold) else fails
    return f"{shown} {symbol} threshold {readable_number(alarm.threshold)}{unit}"


def alarm_condition(alarm: AlarmNotification) -> str:
    """ "ErrorRate > 0.2, Average per 1 h, 2 of 3 periods": when this alarm fires."""
    if alarm.metric is None:
        return "see the alarm"
    text = alarm.metric.name
    if alarm.threshold is not None and alarm.comparison in _COMPARISON_SYMBOLS:
        text += f" {_COMPARISON_SYMBOLS[alarm.comparison][0]} {readable_number(alarm.threshold)}"
    text += f", {alarm.metric.statistic} per {readable_period(alarm.metric.period_seconds)}"
    if alarm.evaluation_periods:
        needed = alarm.datapoints_to_alarm or alarm.evaluation_periods
        text += f", {needed} of {alarm.evaluation_periods} periods"
    return text


def readable_period(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per period, scaled from the lowest to the highest value shown; "·" for no data."""
    present = [value for value in values if value is not None]
    if not present:
        return _MISSING * len(values)
    low, high = min(present), max(present)
    bars = []
    for value in values:
        if value is None:
            bars.append(_MISSING)
        elif high == low:
            bars.append(_BARS[len(_BARS) // 2 - 1])
        else:
            bars.append(_BARS[round((value - low) / (high - low) * (len(_BARS) - 1))])
    return "".join(bars)


def slack_escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters; alarm names and reasons may contain them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class RecentValues:
    """The metric over the last periods, oldest first; None where a period had no data."""

    period_seconds: int
    values: tuple[float | None, ...]

    @property
    def latest(self) -> float | None:
        return next((value for value in reversed(self.values) if value is not None), None)


@dataclass(frozen=True)
class Link:
    label: str
    url: str


# Console hosts per partition; only the commercial partition has per-region hostnames.
_CONSOLE_HOSTS = {
    "aws": "{region}.console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}


def console_base(partition: str, region: str) -> str:
    return "https://" + _CONSOLE_HOSTS.get(partition, _CONSOLE_HOSTS["aws"]).format(region=region)


def alarm_console_url(alarm: AlarmNotification) -> str:
    base = console_base(alarm.partition, alarm.region)
    name = urllib.parse.quote(alarm.name, safe="")
    return f"{base}/cloudwatch/home?region={alarm.region}#alarmsV2:alarm/{name}"


def dashboard_console_url(partition: str, region: str, dashboard_name: str) -> str:
    name = urllib.parse.quote(dashboard_name, safe="")
    return f"{console_base(partition, region)}/cloudwatch/home?region={region}#dashboards/dashboard/{name}"


def s3_object_console_url(partition: str, region: str, bucket: str, key: str) -> str:
    prefix = urllib.parse.quote(key, safe="/")
    return f"{console_base(partition, region)}/s3/object/{bucket}?region={region}&prefix={prefix}"


def s3_prefix_console_url(partition: str, region: str, bucket: str, prefix: str) -> str:
    encoded = urllib.parse.quote(prefix, safe="/")
    base = console_base(partition, region)
    return f"{base}/s3/buckets/{bucket}?region={region}&prefix={encoded}&showversions=false"


_STATE_STYLE = {
    # Block Kit blocks carry no colour; the legacy attachment wrapping them does, as a
    # bar down the left edge. The emoji repeats the state for clients that show no bar
    # (notifications, other Slack-compatible receivers) and for colour-blind readers.
    ALARM: ("#E01E5A", "🔴"),
    OK: ("#2EB67D", "✅"),
    INSUFFICIENT_DATA: ("#ECB22E", "⚪"),
}


def slack_date(moment: datetime) -> str:
    """Slack shows the time in each reader's own timezone; the fallback is UTC."""
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time_secs}}|{fallback}>"


def build_slack_message(
    alarm: AlarmNotification,
    *,
    current_value: float | None,
    recent: RecentValues | None,
    links: Sequence[Link],
) -> dict[str, Any]:
    """The webhook payload: a coloured attachment holding Block Kit blocks, plus fallback text."""
    colour, emoji = _STATE_STYLE.get(alarm.new_state, ("#808080", "❔"))
    model = alarm.model_name or "(no ModelName dimension)"
    value_line = value_against_threshold(alarm, current_value)
    transition = f"{alarm.old_state or '?'} → {alarm.new_state}"

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _truncate(f"{emoji} {alarm.new_state}: {alarm.name}", HEADER_MAX_CHARS),
                "emoji": True,
            },
        },
        {
            "type": "section",
            "fields": [
                _mrkdwn(f"*Model*\n{slack_escape(model)}", FIELD_MAX_CHARS),
                _mrkdwn(f"*State*\n{transition}", FIELD_MAX_CHARS),
                _mrkdwn(f"*Value*\n{slack_escape(value_line)}", FIELD_MAX_CHARS),
                _mrkdwn(f"*Alarm when*\n{slack_escape(alarm_condition(alarm))}", FIELD_MAX_CHARS),
                _mrkdwn(f"*Time*\n{slack_date(alarm.state_change_time)}", FIELD_MAX_CHARS),
            ],
        },
        {"type": "section", "text": _mrkdwn(f"*Reason*\n{slack_escape(alarm.reason)}", SECTION_MAX_CHARS)},
    ]
    if recent is not None and recent.values:
        numbers = " · ".join("–" if value is None else readable_number(value) for value in recent.values)
        period = readable_period(recent.period_seconds)
        title = f"*Last {len(recent.values)} periods of {period}* (oldest → newest)"
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(f"{title}\n`{sparkline(recent.values)}`  {numbers}", SECTION_MAX_CHARS),
            }
        )
    if links:
        line = " · ".join(f"<{link.url}|{slack_escape(link.label)}>" for link in links)
        blocks.append({"type": "section", "text": _mrkdwn(line, SECTION_MAX_CHARS)})
    if alarm.description:
        blocks.append(
            {"type": "context", "elements": [_mrkdwn(slack_escape(alarm.description), FIELD_MAX_CHARS)]}
        )

    # Notifications, screen readers and receivers without Block Kit show only this text.
    fallback = f"{emoji} {alarm.new_state}: {value_line} on model {model} ({alarm.name})"
    return {"text": slack_escape(fallback), "attachments": [{"color": colour, "blocks": blocks}]}


def _mrkdwn(text: str, limit: int) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _truncate(text, limit)}


def gather_links(
    alarm: AlarmNotification, config: AlertConfig, latest_report: str | None, moved_the_alarm: bool = False
) -> list[Link]:
    """The alarm, the dashboard and the newest report page (or, without one, where reports
    appear). ``moved_the_alarm``: the report's batch is in the datapoint that moved the alarm."""
    links = [Link("Alarm in CloudWatch", alarm_console_url(alarm))]
    if config.dashboard_name:
        links.append(
            Link("Dashboard", dashboard_console_url(alarm.partition, alarm.region, config.dashboard_name))
        )
    if config.ingest_bucket:
        if latest_report:
            url = s3_object_console_url(alarm.partition, alarm.region, config.ingest_bucket, latest_report)
            links.append(
                Link(
                    "Report of the batch that moved the alarm" if moved_the_alarm else "Latest batch report",
                    url,
                )
            )
        else:
            url = s3_prefix_console_url(alarm.partition, alarm.region, config.ingest_bucket, RESULTS_PREFIX)
            links.append(Link("Batch reports", url))
    return links
