"""SNS fan-out for the local cloud: email to an outbox, Lambda subscriptions to the local runtime.

moto keeps topics and subscriptions (with their filter policies) but cannot deliver to
email or to our functions; the moto server process hands those deliveries to a
``SnsDeliveryReceiver`` of ours instead (see ``moto_server``), every other protocol (SQS,
HTTP) is left to moto. The receiver queues them for the local cloud, which drains the
queue after each alarm evaluation (virtual clock) or continuously (real clock), the way
SNS delivers asynchronously.
"""

from __future__ import annotations

import email.policy
import email.utils
import json
import queue
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SNS_SENDER = "AWS Notifications <no-reply@sns.amazonaws.com>"
# shutdown() waits for serve_forever to notice, by default up to 0.5 s per server.
_QUICK_STOP = {"poll_interval": 0.05}


@dataclass(frozen=True)
class SnsDelivery:
    """One message for one subscription, as SNS would hand it over."""

    protocol: str
    endpoint: str
    subscription_arn: str
    topic_arn: str
    message_id: str
    subject: str | None
    message: str
    timestamp: datetime


class SnsDeliveryReceiver:
    """Loopback HTTP endpoint the moto server POSTs email and Lambda deliveries to; queues them.

    The POST happens inside moto's handling of the Publish call, so a delivery is queued by
    the time the publisher's call returns; it is stamped with ``clock``'s time then.
    """

    def __init__(self, deliveries: queue.Queue[SnsDelivery], clock: Any) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fields = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                deliveries.put(SnsDelivery(**fields, timestamp=clock.now()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs=_QUICK_STOP, name="sns-deliveries", daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/sns"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- email


def _email_time(moment: datetime) -> str:
    # CloudWatch's alarm emails write times as "Thursday 26 November, 2026 10:15:42 UTC".
    return f"{moment:%A} {moment.day} {moment:%B, %Y %H:%M:%S} UTC"


def _message_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


def cloudwatch_alarm_email_body(alarm: dict[str, Any], delivery: SnsDelivery) -> str:
    """The text of the email SNS sends for a CloudWatch alarm notification."""
    region_code = (alarm.get("AlarmArn") or "::::").split(":")[3] or "us-east-1"
    changed_at = _email_time(_message_time(alarm.get("StateChangeTime", "")))
    trigger = alarm.get("Trigger") or {}
    dimensions = ", ".join(f"{d.get('name')} = {d.get('value')}" for d in trigger.get("Dimensions") or [])
    datapoints = trigger.get("DatapointsToAlarm") or trigger.get("EvaluationPeriods")
    unsubscribe = (
        f"https://sns.{region_code}.amazonaws.com/unsubscribe.html?SubscriptionArn="
        f"{delivery.subscription_arn}&Endpoint={delivery.endpoint}"
    )
    return "\n".join(
        [
            "You are receiving this email because your Amazon CloudWatch Alarm "
            f'"{alarm.get("AlarmName")}" in the '
            f"{alarm.get('Region')} region has entered the {alarm.get('NewStateValue')} state, because "
            f'"{alarm.get("NewStateReason")}" at "{changed_at}".',
            "",
            "View this alarm in the AWS Management Console:",
            f"https://{region_code}.console.aws.amazon.com/cloudwatch/deeplink.js?region={region_code}"
            f"#alarmsV2:alarm/{alarm.get('AlarmName')}",
            "",
            "Alarm Details:",
            f"- Name:                       {alarm.get('AlarmName')}",
            f"- Description:                {alarm.get('AlarmDescription') or ''}".rstrip(),
            f"- State Change:               {alarm.get('OldStateValue')} -> {alarm.get('NewStateValue')}",
            f"- Reason for State Change:    {alarm.get('NewStateReason')}",
            f"- Timestamp:                  {changed_at}",
            f"- AWS Account:                {alarm.get('AWSAccountId')}",
            f"- Alarm Arn:                  {alarm.get('AlarmArn')}",
            "",
            "Threshold:",
            f"- The alarm is in the ALARM state when the metric is {trigger.get('ComparisonOperator')} "
            f"{trigger.get('Threshold')} for at least {datapoints} of the last "
            f"{trigger.get('EvaluationPeriods')} "
            f"period(s) of {trigger.get('Period')} seconds.",
            "",
            "Monitored Metric:",
            f"- MetricNamespace:                     {trigger.get('Namespace')}",
            f"- MetricName:                          {trigger.get('MetricName')}",
            f"- Dimensions:                          [{dimensions}]",
            f"- Period:                              {trigger.get('Period')} seconds",
            f"- Statistic:                           {str(trigger.get('Statistic', '')).title()}",
            f"- Unit:                                {trigger.get('Unit') or 'not specified'}",
            f"- TreatMissingData:                    {trigger.get('TreatMissingData')}",
            "",
            "",
            "State Change Actions:",
            f"- OK: [{', '.join(alarm.get('OKActions') or [])}]",
            f"- ALARM: [{', '.join(alarm.get('AlarmActions') or [])}]",
            f"- INSUFFICIENT_DATA: [{', '.join(alarm.get('InsufficientDataActions') or [])}]",
            "",
            "",
            "--",
            "If you wish to stop receiving notifications from this topic, please click or visit the link "
            "below "
            "to unsubscribe:",
            unsubscribe,
            "",
            "Please do not reply directly to this email. If you have any questions or comments regarding "
            "this "
            "email, please contact us at https://aws.amazon.com/support",
        ]
    )


@dataclass
class OutboxEmail:
    path: Path
    subject: str
    recipient: str
    body: str
    alarm: dict[str, Any] | None
    sent_at: datetime


@dataclass
class EmailOutbox:
    """Email subscriptions' messages, one .eml file each (open it in any mail client)."""

    directory: Path
    sent: list[OutboxEmail] = field(default_factory=list)

    def deliver(self, delivery: SnsDelivery) -> OutboxEmail:
        alarm: dict[str, Any] | None = None
        try:
            parsed = json.loads(delivery.message)
            if isinstance(parsed, dict) and "AlarmName" in parsed and "NewStateValue" in parsed:
                alarm = parsed
        except json.JSONDecodeError:
            pass
        if delivery.protocol == "email-json":
            body = json.dumps(
                {
                    "Type": "Notification",
                    "MessageId": delivery.message_id,
                    "TopicArn": delivery.topic_arn,
                    "Subject": delivery.subject,
                    "Message": delivery.message,
                    "Timestamp": delivery.timestamp.isoformat(),
                },
                indent=2,
            )
        elif alarm is not None:
            body = cloudwatch_alarm_email_body(alarm, delivery)
        else:
            body = delivery.message
        subject = delivery.subject or "AWS Notification Message"
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = SNS_SENDER
        message["To"] = delivery.endpoint
        message["Date"] = email.utils.format_datetime(delivery.timestamp)
        message["Message-ID"] = f"<{delivery.message_id}@sns.amazonaws.com>"
        message.set_content(body)
        self.directory.mkdir(parents=True, exist_ok=True)
        label = re.sub(
            r"[^A-Za-z0-9._-]+",
            "-",
            f"{alarm.get('NewStateValue')}-{alarm.get('AlarmName')}" if alarm else subject,
        ).strip("-")[:80]
        path = self.directory / f"{len(self.sent) + 1:03d}-{label}.eml"
        # RFC 5322's 998-character line limit: folding the quoted alarm name at 78 would make
        # some readers show the subject with a leading space.
        path.write_bytes(message.as_bytes(policy=email.policy.default.clone(max_line_length=998)))
        sent = OutboxEmail(path, subject, delivery.endpoint, body, alarm, delivery.timestamp)
        self.sent.append(sent)
        return sent


# --------------------------------------------------------------------------- webhook receiver


@dataclass(frozen=True)
class WebhookRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 standing in for a Slack incoming webhook; records each POST."""

    def __init__(self) -> None:
        self.requests: list[WebhookRequest] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(
                    WebhookRequest(self.path, dict(self.headers.items()), body, datetime.now(UTC))
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")  # what Slack answers to an accepted message

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs=_QUICK_STOP, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        # A path shaped like Slack's: the notifier treats it as the secret part of the URL.
        self.url = f"http://127.0.0.1:{self._server.server_port}/services/TLOCAL/BLOCAL/{uuid.uuid4().hex}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def slack_text(payload: Any) -> str:
    """A Slack message (text and Block Kit) as readable plain text for the terminal and the JSON."""
    if not isinstance(payload, dict):
        return str(payload)
    lines: list[str] = []

    def text_of(element: Any) -> str:
        return element.get("text", "") if isinstance(element, dict) else str(element or "")

    for block in payload.get("blocks") or []:
        if block.get("text"):
            lines.append(text_of(block["text"]))
        for item in block.get("fields") or []:
            lines.append(text_of(item))
        for item in block.get("elements") or []:
            if item.get("type") == "button":
                lines.append(f"[{text_of(item.get('text'))}] {item.get('url', '')}")
            elif "text" in item:
                lines.append(text_of(item))
    for attachment in payload.get("attachments") or []:
        lines.append(slack_text(attachment))
    if not lines and payload.get("text"):
        lines.append(str(payload["text"]))
    return "\n".join(line for line in lines if line)
