"""The Slack message an on-call person reads, built from the sample alarm events.

Expected strings are written out by hand from the CloudWatch console's URL scheme and
from the numbers in the events, not produced by the code under test.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from modelwatch.alerts import alarm_message, slack_message, webhook
from modelwatch.alerts.alarm_message import AlarmNotification, MetricSpec
from modelwatch.alerts.slack_message import RecentValues, build_slack_message, gather_links
from modelwatch.config import AlertConfig
from modelwatch.errors import ConfigError
from tests.events import load_event

ALARM_NAME = "modelwatch-prod-quality-churn-classifier"
SLACK_HOSTS = ("hooks.slack.com",)


def alarm_from(event_name: str, **overrides: Any) -> AlarmNotification:
    message = json.loads(load_event(event_name)["Records"][0]["Sns"]["Message"])
    message.update(overrides)
    return AlarmNotification.from_sns_message(json.dumps(message))


def rendered(payload: dict[str, Any]) -> str:
    """Every text a reader sees, with Slack's &amp;/&lt;/&gt; escapes turned back into characters."""
    texts = [payload["text"]]
    for attachment in payload["attachments"]:
        for block in attachment["blocks"]:
            if "text" in block:
                texts.append(block["text"]["text"])
            texts.extend(field["text"] for field in block.get("fields", []))
            texts.extend(element["text"] for element in block.get("elements", []))
    return html.unescape("\n".join(texts))


@pytest.fixture
def settings() -> AlertConfig:
    return AlertConfig(
        slack_webhook_secret_name="modelwatch/slack-webhook",
        dashboard_name="modelwatch-prod",
        ingest_bucket="modelwatch-prod-ingest",
    )


def test_alarm_message_states_value_against_threshold_in_readable_numbers(
    settings: AlertConfig,
) -> None:
    alarm = alarm_from("alert-notifier-alarm")
    # An average over rows rarely lands on a short decimal; the reader should not see the noise.
    payload = build_slack_message(
        alarm,
        current_value=0.31200000000000006,
        recent=RecentValues(3600, (0.11, 0.12, None, 0.254, 0.31200000000000006, None)),
        links=gather_links(alarm, settings, None),
    )
    text = rendered(payload)

    assert "ErrorRate 0.312 > threshold 0.2" in text
    assert "0.31200000000000006" not in text
    assert "churn-classifier" in text  # the ModelName dimension
    assert "OK → ALARM" in text
    assert "were greater than the threshold (0.2)" in text  # CloudWatch's own reason, verbatim
    assert "2026-11-26 10:15:42 UTC" in text
    assert "ErrorRate > 0.2, Average per 1 h, 2 of 3 periods" in text
    # Trend: oldest first, a gap where no batch arrived, highest value as the tallest bar.
    assert "0.11 · 0.12 · – · 0.254 · 0.312 · –" in text
    assert "`▁▁·▆█·`" in text


def test_alarm_message_is_red_and_ok_message_is_green(settings: AlertConfig) -> None:
    alarm_payload = build_slack_message(
        alarm_from("alert-notifier-alarm"), current_value=0.312, recent=None, links=[]
    )
    ok_payload = build_slack_message(
        alarm_from("alert-notifier-ok"), current_value=0.118, recent=None, links=[]
    )

    assert alarm_payload["attachments"][0]["color"] == "#E01E5A"
    assert ok_payload["attachments"][0]["color"] == "#2EB67D"
    alarm_header = alarm_payload["attachments"][0]["blocks"][0]
    ok_header = ok_payload["attachments"][0]["blocks"][0]
    assert alarm_header["type"] == ok_header["type"] == "header"
    assert alarm_header["text"]["text"] == f"🔴 ALARM: {ALARM_NAME}"
    assert ok_header["text"]["text"] == f"✅ OK: {ALARM_NAME}"


def test_ok_message_shows_the_value_back_on_the_safe_side(settings: AlertConfig) -> None:
    payload = build_slack_message(alarm_from("alert-notifier-ok"), current_value=0.118, recent=None, links=[])
    text = rendered(payload)

    assert "ErrorRate 0.118 ≤ threshold 0.2" in text
    assert "ALARM → OK" in text


def test_every_block_type_is_one_slack_accepts_inside_an_attachment(settings: AlertConfig) -> None:
    alarm = alarm_from("alert-notifier-alarm")
    payload = build_slack_message(
        alarm,
        current_value=0.312,
        recent=RecentValues(3600, (0.1,) * 6),
        links=gather_links(alarm, settings, None),
    )
    blocks = payload["attachments"][0]["blocks"]

    assert [block["type"] for block in blocks] == [
        "header",
        "section",
        "section",
        "section",
        "section",
        "context",
    ]
    assert len(blocks[1]["fields"]) <= 10  # Slack's limit on fields per section
    assert all(field["type"] == "mrkdwn" for field in blocks[1]["fields"])


def test_console_link_uses_the_region_of_the_alarm_arn(settings: AlertConfig) -> None:
    alarm = alarm_from("alert-notifier-alarm")  # ARN in eu-west-1, Region "EU (Ireland)"

    links = {link.label: link.url for link in gather_links(alarm, settings, None)}

    assert links["Alarm in CloudWatch"] == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#alarmsV2:alarm/modelwatch-prod-quality-churn-classifier"
    )


def test_console_link_follows_another_region_and_encodes_the_alarm_name(settings: AlertConfig) -> None:
    alarm = alarm_from(
        "alert-notifier-alarm",
        AlarmName="churn quality/prod",
        AlarmArn="arn:aws:cloudwatch:ap-southeast-2:123456789012:alarm:churn quality/prod",
        Region="Asia Pacific (Sydney)",
    )

    assert slack_message.alarm_console_url(alarm) == (
        "https://ap-southeast-2.console.aws.amazon.com/cloudwatch/home?region=ap-southeast-2"
        "#alarmsV2:alarm/churn%20quality%2Fprod"
    )


def test_message_links_the_alarm_the_dashboard_and_the_latest_report(settings: AlertConfig) -> None:
    alarm = alarm_from("alert-notifier-alarm")
    report = "results/incoming/2026/11/26/batch-0930.csv/report.html"

    payload = build_slack_message(
        alarm, current_value=0.312, recent=None, links=gather_links(alarm, settings, report)
    )
    links_text = payload["attachments"][0]["blocks"][-2]["text"]["text"]

    assert (
        "<https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#dashboards/dashboard/modelwatch-prod|Dashboard>"
    ) in links_text
    assert (
        "<https://eu-west-1.console.aws.amazon.com/s3/object/modelwatch-prod-ingest?region=eu-west-1"
        "&prefix=results/incoming/2026/11/26/batch-0930.csv/report.html|Latest batch report>"
    ) in links_text
    assert "#alarmsV2:alarm/modelwatch-prod-quality-churn-classifier|Alarm in CloudWatch>" in links_text


def test_without_a_report_pointer_the_link_goes_to_where_reports_appear(settings: AlertConfig) -> None:
    alarm = alarm_from("alert-notifier-alarm")

    links = gather_links(alarm, settings, None)

    assert links[-1].label == "Batch reports"
    assert links[-1].url == (
        "https://eu-west-1.console.aws.amazon.com/s3/buckets/modelwatch-prod-ingest?region=eu-west-1"
        "&prefix=results/&showversions=false"
    )


def test_no_dashboard_or_report_link_when_they_are_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_SECRET_NAME", "modelwatch/slack-webhook")
    monkeypatch.delenv("DASHBOARD_NAME", raising=False)
    monkeypatch.delenv("INGEST_BUCKET", raising=False)

    links = gather_links(alarm_from("alert-notifier-alarm"), AlertConfig.from_env(), None)

    assert [link.label for link in links] == ["Alarm in CloudWatch"]


def test_insufficient_data_to_ok_is_not_posted() -> None:
    post, why = alarm_message.should_post(alarm_from("alert-notifier-insufficient-to-ok"))

    assert post is False
    assert "INSUFFICIENT_DATA -> OK" in why


@pytest.mark.parametrize(
    ("old_state", "new_state"),
    [("OK", "ALARM"), ("ALARM", "OK"), ("INSUFFICIENT_DATA", "ALARM"), ("OK", "INSUFFICIENT_DATA")],
)
def test_other_transitions_are_posted(old_state: str, new_state: str) -> None:
    post, _ = alarm_message.should_post(
        alarm_from("alert-notifier-alarm", OldStateValue=old_state, NewStateValue=new_state)
    )

    assert post is True


def test_alarm_message_is_read_into_the_metric_getmetricdata_needs() -> None:
    alarm = alarm_from("alert-notifier-alarm")

    assert alarm.metric == MetricSpec(
        namespace="ModelWatch",
        name="ErrorRate",
        dimensions=(("ModelName", "churn-classifier"),),
        statistic="Average",  # the message says "AVERAGE"; GetMetricData rejects that spelling
        period_seconds=3600,
        unit=None,
    )
    assert alarm.region == "eu-west-1"
    assert alarm.state_change_time == datetime(2026, 11, 26, 10, 15, 42, 512000, tzinfo=UTC)


def test_reason_text_with_slack_control_characters_is_escaped() -> None:
    alarm = alarm_from("alert-notifier-alarm", NewStateReason="rows <30 & coverage >90%")

    payload = build_slack_message(alarm, current_value=None, recent=None, links=[])
    reason = payload["attachments"][0]["blocks"][2]["text"]["text"]

    assert reason == "*Reason*\nrows &lt;30 &amp; coverage &gt;90%"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.312, "0.312"),
        (0.2, "0.2"),
        (0.31200000000000006, "0.312"),
        (1234.0, "1,234"),
        (12.0, "12"),
        (0.0, "0"),
    ],
)
def test_readable_number(value: float, expected: str) -> None:
    assert slack_message.readable_number(value) == expected


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("https://hooks.slack.com/services/T0/B0/abc\n", "https://hooks.slack.com/services/T0/B0/abc"),
        (
            '{"webhook_url": "https://hooks.slack.com/services/T0/B0/abc"}',
            "https://hooks.slack.com/services/T0/B0/abc",
        ),
    ],
)
def test_secret_holds_the_url_or_json_with_webhook_url(secret: str, expected: str) -> None:
    assert webhook.webhook_url_from_secret(secret, allowed_hosts=SLACK_HOSTS) == expected


@pytest.mark.parametrize(
    "secret", ['{"url": "https://hooks.slack.com/services/T0/B0/abc"}', "file:///etc/passwd"]
)
def test_unusable_secret_is_refused_without_quoting_it(secret: str) -> None:
    with pytest.raises(ConfigError) as raised:
        webhook.webhook_url_from_secret(secret, allowed_hosts=SLACK_HOSTS)

    assert "abc" not in str(raised.value) and "passwd" not in str(raised.value)


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    now = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)

    assert webhook.parse_retry_after("1", now) == 1.0
    assert webhook.parse_retry_after("Thu, 26 Nov 2026 10:00:30 GMT", now) == 30.0
    assert webhook.parse_retry_after("soon", now) is None


# --------------------------------------------------------------------------- where the webhook may point

# The part of a webhook URL that authorises posting: a refusal must never quote it.
TOKEN_PATH = "/services/T0/B0/sEcReTtOkEn"


def test_https_webhook_on_an_allowed_host_is_accepted() -> None:
    url = f"https://hooks.slack.com{TOKEN_PATH}"

    assert webhook.webhook_url_from_secret(url, allowed_hosts=SLACK_HOSTS) == url
    assert (
        webhook.webhook_url_from_secret(f"https://HOOKS.slack.com:443{TOKEN_PATH}", allowed_hosts=SLACK_HOSTS)
        == f"https://HOOKS.slack.com:443{TOKEN_PATH}"
    )


@pytest.mark.parametrize(
    ("url", "host", "why"),
    [
        (f"http://hooks.slack.com{TOKEN_PATH}", "hooks.slack.com", "uses http"),
        (f"https://127.0.0.1:8443{TOKEN_PATH}", "127.0.0.1", "not an allowed webhook host"),
        # The instance metadata endpoint: a post there could read credentials back.
        (f"http://169.254.169.254/latest/meta-data{TOKEN_PATH}", "169.254.169.254", "uses http"),
        (f"https://169.254.169.254{TOKEN_PATH}", "169.254.169.254", "not an allowed webhook host"),
        (
            f"https://hooks.slack.com.attacker.example{TOKEN_PATH}",
            "hooks.slack.com.attacker.example",
            "not an",
        ),
        # urlsplit and urllib both connect to the host after "@"; the name before it is a decoy.
        (f"https://hooks.slack.com@attacker.example{TOKEN_PATH}", "attacker.example", "user name"),
    ],
)
def test_webhook_elsewhere_is_refused_naming_the_host_not_the_url(url: str, host: str, why: str) -> None:
    with pytest.raises(ConfigError) as raised:
        webhook.webhook_url_from_secret(json.dumps({"webhook_url": url}), allowed_hosts=SLACK_HOSTS)

    message = str(raised.value)
    assert f"'{host}'" in message
    assert why in message
    assert "sEcReTtOkEn" not in message and "/services/" not in message


def test_http_on_an_allowed_host_is_accepted_only_when_the_switch_allows_it() -> None:
    url = f"http://127.0.0.1:8080{TOKEN_PATH}"

    assert webhook.webhook_url_from_secret(url, allowed_hosts=("127.0.0.1",), allow_http=True) == url
    with pytest.raises(ConfigError, match="'127.0.0.1' uses http"):
        webhook.webhook_url_from_secret(url, allowed_hosts=("127.0.0.1",), allow_http=False)
    with pytest.raises(ConfigError, match="'169.254.169.254', which is not an allowed"):
        webhook.webhook_url_from_secret(
            f"http://169.254.169.254{TOKEN_PATH}", allowed_hosts=("127.0.0.1",), allow_http=True
        )


def test_allowed_hosts_and_the_http_switch_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_SECRET_NAME", "modelwatch/slack-webhook")
    monkeypatch.delenv("SLACK_WEBHOOK_ALLOWED_HOSTS", raising=False)
    monkeypatch.delenv("SLACK_WEBHOOK_ALLOW_HTTP", raising=False)
    defaults = AlertConfig.from_env()
    monkeypatch.setenv("SLACK_WEBHOOK_ALLOWED_HOSTS", "hooks.slack.com, Chat.Example.org")
    monkeypatch.setenv("SLACK_WEBHOOK_ALLOW_HTTP", "True")
    configured = AlertConfig.from_env()

    assert (defaults.slack_webhook_allowed_hosts, defaults.slack_webhook_allow_http) == (
        ("hooks.slack.com",),
        False,
    )
    # urlsplit lowercases the host it compares, so the list is lowercased too.
    assert configured.slack_webhook_allowed_hosts == ("hooks.slack.com", "chat.example.org")
    assert configured.slack_webhook_allow_http is True


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SLACK_WEBHOOK_ALLOWED_HOSTS", "https://hooks.slack.com", "not a bare host name"),
        ("SLACK_WEBHOOK_ALLOWED_HOSTS", "hooks.slack.com/services", "not a bare host name"),
        ("SLACK_WEBHOOK_ALLOW_HTTP", "yes", 'must be "true" or "false"'),
    ],
)
def test_a_malformed_webhook_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_SECRET_NAME", "modelwatch/slack-webhook")
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError, match=variable) as raised:
        AlertConfig.from_env()

    assert expected in str(raised.value)


def test_a_failed_auto_promotion_says_how_to_finish_it_not_that_nothing_was_switched():
    from modelwatch.alerts.announcement import retrain_announcement

    # A promotion can fail after models/champion.json names the candidate and some functions
    # serve it (the switch of one function refused): "nothing was switched" would be false.
    decision = {
        "quality_metric": "ErrorRate",
        "model_name": "churn",
        "decision": "candidate",
        "status": "candidate",
        "reason": "the challenger is better on the holdout",
        "champion_version": "v1",
        "challenger_version": "v2",
        "trigger": {"kind": "on_demand"},
        "candidate_uri": "s3://bucket/models/v2/",
        "promotion_error": "ResourceNotFoundException: Function not found: monitor",
        "promote_command": "modelwatch model promote --version v2 --bucket bucket",
    }
    text = retrain_announcement(decision)
    assert "nothing was switched" not in text
    assert "AutoPromote failed: ResourceNotFoundException: Function not found: monitor" in text
    assert "modelwatch model champion" in text and "finishes an interrupted promotion" in text
    assert "modelwatch model promote --version v2 --bucket bucket" in text
