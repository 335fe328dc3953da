"""Delivery to the Slack webhook: only allowlisted https hosts, no redirects, retries that
honour Retry-After, and never the URL itself in a log line or an error.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from modelwatch.errors import ConfigError, SlackDeliveryError

logger = logging.getLogger(__name__)

# How much of Slack's error body goes into a log line: enough for "invalid_token" or
# "channel_is_archived", not enough to flood the log with an HTML error page.
RESPONSE_EXCERPT_CHARS = 300
# Keep this much of the Lambda's remaining time free when deciding whether another
# attempt fits, so the function raises cleanly instead of being killed mid-request.
LAMBDA_SAFETY_MARGIN_SECONDS = 1.0


def webhook_url_from_secret(
    secret_value: str, *, allowed_hosts: Sequence[str], allow_http: bool = False
) -> str:
    """The secret holds the URL itself or {"webhook_url": "..."}; errors never quote the value."""
    text = secret_value.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError("the Slack webhook secret looks like JSON but does not parse") from None
        url = document.get("webhook_url") if isinstance(document, dict) else None
        if not isinstance(url, str) or not url.strip():
            raise ConfigError('the Slack webhook secret is JSON without a "webhook_url" string')
        text = url.strip()
    check_webhook_url(text, allowed_hosts=allowed_hosts, allow_http=allow_http)
    return text


def check_webhook_url(url: str, *, allowed_hosts: Sequence[str], allow_http: bool = False) -> None:
    """Refuse a URL that is not https on an allowed host, naming the host and never the URL.

    Whoever can edit the secret could otherwise send every alert, and a token with it, to
    any address the function reaches: plain http, 127.0.0.1, 169.254.169.254 (the
    instance metadata endpoint).
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise ConfigError("the Slack webhook secret does not hold a readable URL") from None
    # urllib would also open file:// and ftp:// URLs.
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError("the Slack webhook secret must hold an https URL, or JSON with webhook_url")
    if parts.scheme == "http" and not allow_http:
        raise ConfigError(
            f"the Slack webhook URL for host {host!r} uses http, which would send its token "
            "unencrypted; only https is accepted (SlackWebhookAllowHttp is for a local receiver)"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"the Slack webhook URL for host {host!r} carries a user name; a webhook URL has none"
        )
    if host not in allowed_hosts:
        raise ConfigError(
            f"the Slack webhook URL points to host {host!r}, which is not an allowed webhook host "
            f"({', '.join(allowed_hosts) or 'none'}); if it really is your webhook's host, add it "
            "to the template parameter SlackWebhookAllowedHosts"
        )


def redacted(url: str) -> str:
    """What logs may say about the webhook: its host, never the path that authorises posting."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/[redacted]"


def _scrub(text: str, url: str) -> str:
    path = urllib.parse.urlsplit(url).path
    text = text.replace(url, redacted(url))
    return text.replace(path, "/[redacted]") if len(path) > 1 else text


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After in seconds, from either of its HTTP forms (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_seconds: float
    max_attempts: int
    backoff_base_seconds: float
    max_backoff_seconds: float


@dataclass(frozen=True)
class _Attempt:
    delivered: bool
    retryable: bool
    description: str  # already free of the URL
    status: int | None = None
    retry_after_seconds: float | None = None


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook never redirects; following one would hand the alert to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


def _post_once(url: str, body: bytes, timeout_seconds: float) -> _Attempt:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "modelwatch-alert-notifier",
        },
    )
    try:
        # The timeout bounds the connect and every socket read, so a silent server costs
        # at most a few multiples of it, never the whole Lambda timeout.
        with _OPENER.open(request, timeout=timeout_seconds) as response:
            response.read(RESPONSE_EXCERPT_CHARS)
            return _Attempt(
                delivered=True, retryable=False, description=f"HTTP {response.status}", status=response.status
            )
    except urllib.error.HTTPError as error:
        status = error.code
        try:
            excerpt = error.read(RESPONSE_EXCERPT_CHARS).decode("utf-8", errors="replace").strip()
        except (OSError, http.client.HTTPException):
            excerpt = ""
        retry_after = parse_retry_after(error.headers.get("Retry-After") if error.headers else None)
        error.close()
        description = _scrub(f"HTTP {status}: {excerpt or '(empty body)'}", url)
        if status == 429:
            return _Attempt(False, True, description, status, retry_after)
        # Any other 4xx (bad payload, revoked or unknown webhook) fails the same way every time.
        return _Attempt(False, status >= 500, description, status)
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, TimeoutError):
            return _Attempt(False, True, f"no answer within {timeout_seconds:g} s")
        return _Attempt(False, True, _scrub(f"connection failed: {type(reason).__name__}: {reason}", url))
    except TimeoutError:
        return _Attempt(False, True, f"no answer within {timeout_seconds:g} s")
    except (http.client.HTTPException, OSError) as error:
        return _Attempt(False, True, _scrub(f"connection failed: {type(error).__name__}: {error}", url))


def post_to_slack(
    url: str,
    payload: dict[str, Any],
    policy: DeliveryPolicy,
    *,
    time_left_seconds: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST the payload; retry 429 (after Retry-After), 5xx, timeouts and connection errors.

    Returns the number of attempts used. Raises SlackDeliveryError at once on any other
    4xx, when Slack asks for a longer wait than the policy allows, when the Lambda has no
    time left for another attempt, or after the last attempt.
    """
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    where = redacted(url)
    last = _Attempt(delivered=False, retryable=False, description="no attempt made (max_attempts < 1)")
    for attempt in range(1, policy.max_attempts + 1):
        last = _post_once(url, body, policy.timeout_seconds)
        if last.delivered:
            logger.info("Posted the alert to %s on attempt %d", where, attempt, extra={"attempts": attempt})
            return attempt
        if not last.retryable:
            logger.error(
                "Slack webhook %s rejected the alert with HTTP %s, not retrying: %s",
                where,
                last.status,
                last.description,
                extra={"http_status": last.status},
            )
            raise SlackDeliveryError(
                f"Slack webhook {where} rejected the alert: {last.description}",
                status=last.status,
                attempts=attempt,
            )
        if attempt == policy.max_attempts:
            break
        if last.retry_after_seconds is not None:
            delay = last.retry_after_seconds
            if delay > policy.max_backoff_seconds:
                raise SlackDeliveryError(
                    f"Slack webhook {where} asked to wait {delay:g} s, more than SLACK_MAX_BACKOFF_SECONDS "
                    f"({policy.max_backoff_seconds:g} s); leaving the retry to Lambda",
                    status=last.status,
                    attempts=attempt,
                )
        else:
            # Exponential backoff with jitter, so notifiers retrying together do not hit Slack in step.
            ceiling = min(policy.max_backoff_seconds, policy.backoff_base_seconds * 2 ** (attempt - 1))
            delay = ceiling * random.uniform(0.5, 1.0)
        if time_left_seconds is not None:
            needed = delay + policy.timeout_seconds + LAMBDA_SAFETY_MARGIN_SECONDS
            if time_left_seconds() < needed:
                raise SlackDeliveryError(
                    f"Slack webhook {where}: {last.description}; no time left in this invocation for "
                    f"another attempt, leaving the retry to Lambda",
                    status=last.status,
                    attempts=attempt,
                )
        logger.warning(
            "Slack delivery attempt %d of %d to %s failed (%s); retrying in %.2f s",
            attempt,
            policy.max_attempts,
            where,
            last.description,
            delay,
            extra={"http_status": last.status, "retry_in_seconds": delay},
        )
        sleep(delay)
    raise SlackDeliveryError(
        f"Slack webhook {where} failed after {policy.max_attempts} attempts; last: {last.description}",
        status=last.status,
        attempts=policy.max_attempts,
    )
