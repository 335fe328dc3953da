"""Every exception modelwatch raises on purpose, in one place.

Two families: bad input a person can fix (a rejected batch or actuals file, a wrong
setting, a user error in the CLI), which never prints a traceback; and trouble outside
modelwatch (AWS kept refusing, Slack did not answer), which is raised so Lambda
retries the event and its dead-letter queue keeps it.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad path, bad option, bad file); the CLI prints it
    without a traceback."""


class ConfigError(ValueError):
    """An environment variable is missing or holds a value of the wrong shape."""


class ModelBundleError(RuntimeError):
    """The model directory is missing a file or holds an inconsistent one."""


class BatchRejected(Exception):
    """The batch as a whole cannot be scored; ``reason`` says why and what to do.

    ``reason`` and ``details`` go to the report, which may quote the file (a truncated cell
    value, the header's names). ``log_safe`` is the same reason without anything read from
    the file, for logs, which are kept longer and read more widely than the bucket's reports.
    It defaults to the code alone: a raiser that forgets it cannot leak a value to a log.
    """

    def __init__(self, reason: str, code: str, *, log_safe: str | None = None, **details: object):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.log_safe = code if log_safe is None else log_safe
        self.details = details


class ActualsFileRejected(ValueError):
    """An actuals file cannot be loaded; the message says why and what to fix."""


class ActualsUnavailable(RuntimeError):
    """DynamoDB kept returning unprocessed keys or items after every retry."""


class NotAnAlarmError(ValueError):
    """An SNS message on the alert topic that is not a CloudWatch alarm state change."""


class SlackDeliveryError(RuntimeError):
    """The message did not reach Slack. The text never contains the webhook URL."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class RevisionConflict(Exception):
    """Another invocation advanced the batch's totals first: read again and redo."""


class ResultsContended(Exception):
    """The key's newest report (or latest.json) kept changing under a conditional write:
    the batch is retried."""


class BatchNotSettled(Exception):
    """A logged batch has not finished publishing yet: the stream batch is retried."""


class RetrainRefused(Exception):
    """Retraining cannot be judged fairly; ``reason`` says why and what would change it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CalibrationError(ValueError):
    """calibration.json cannot be used with this model."""
