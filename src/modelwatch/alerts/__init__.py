"""Alert notifier: a CloudWatch alarm notification from SNS, posted to Slack.

The parts, in the order an alert passes through them:

- ``alarm_message``: reading the alarm message and deciding whether it is worth a post (pure);
- ``context``: the metric's recent values, the datapoint the alarm evaluated and the newest
  batch report, fetched from AWS;
- ``slack_message``: the Slack message built from the alarm and its context (pure, so the
  wording is tested without a network);
- ``webhook``: delivery to the webhook (allowlisted hosts, redaction, no redirects, retries);
- ``notifier``: ``AlertNotifier``, which holds the settings and clients and runs the above.

Context is best effort: an alert without its trend line still tells the on-call person
that the model is failing, so a CloudWatch or S3 error is logged and the piece left out.
Delivery is not best effort: it retries what can succeed on retry and then raises, so
Lambda's asynchronous retries and the on-failure destination keep the alert.

The webhook URL is a credential (anyone holding it can post to the channel), so it never
goes into a log line, an exception message or a trace; only its host is named.
"""

from modelwatch.alerts.notifier import AlertNotifier

__all__ = ["AlertNotifier"]
