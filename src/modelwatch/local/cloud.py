"""The local cloud: embedded AWS + the template's stack + functions + alarms + SNS fan-out.

``LocalCloud`` is what `modelwatch demo`, `modelwatch local up`, `modelwatch replay` and
the end-to-end tests drive. Two clocks:

- virtual (replay, demo): the caller sets the time; uploads are dispatched to their
  functions right away, DynamoDB stream records when the caller drains the streams
  (``drain_streams``), and alarms are evaluated when the caller says so, so a day of
  hourly batches runs in seconds and gives the same result every time;
- real (`local up`): a background loop lists the buckets' object versions every second
  (the AWS CLI talks to moto directly, so polling is how uploads are noticed), delivers
  one event per new version as S3 does, hands new stream records to their functions
  (modelwatch.local.streams), and evaluates the alarms every few seconds.

Longer than the package's usual ~450 lines on purpose: it is the one place that wires
the local cloud's parts together (server, stack, runtime, alarms, SNS receivers, the
upload loop); split, a reader would follow each start and stop across files.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from modelwatch.errors import UserError
from modelwatch.local.alarms import AlarmRun, CloudWatchAlarmEvaluator
from modelwatch.local.delivery import (
    EmailOutbox,
    SnsDelivery,
    SnsDeliveryReceiver,
    WebhookReceiver,
    slack_text,
)
from modelwatch.local.layers import ModelLayers
from modelwatch.local.moto_server import EmbeddedAws, start_moto_server
from modelwatch.local.runtime import (
    LOCAL_CREDENTIALS,
    Invocation,
    LambdaRuntime,
    s3_object_created_event,
    sns_event,
)
from modelwatch.local.stack import LocalStack, StackBuilder
from modelwatch.local.streams import StreamDelivery, StreamPoller, destination_sender
from modelwatch.local.template import DEFAULT_STACK_NAME, LOCAL_REGION, load_template

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TEMPLATE = PROJECT_ROOT / "template.yaml"
DEFAULT_MODEL_DIR = PROJECT_ROOT / "layers" / "model" / "artifact"
POLL_INTERVAL_SECONDS = 1.0
REAL_CLOCK_EVALUATION_SECONDS = 5.0
# The notifier's configuration contract (modelwatch.config.AlertConfig): the template feeds it
# the secret's name, which is how the local cloud finds the parameter to point at its receiver.
SLACK_SECRET_VARIABLE = "SLACK_WEBHOOK_SECRET_NAME"
# The receiver is plain http on 127.0.0.1, which the notifier refuses unless the parameters
# feeding these variables allow it (they are set only when the user did not set them).
LOCAL_RECEIVER_SETTINGS = {"SLACK_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "SLACK_WEBHOOK_ALLOW_HTTP": "true"}
# The address subscribed when the caller names no alert channel: the template's rule refuses a
# stack whose alarms notify no one (AlertChannelGiven), here as in CloudFormation, and locally
# an email only lands in the outbox. Naming a channel, an empty one included, or opting out
# with this parameter set to "true" is the caller's choice, and the rule judges it.
LOCAL_ALERT_EMAIL = "oncall@example.com"
NO_CHANNEL_PARAMETER = "AllowNoAlertChannel"


class VirtualClock:
    def __init__(self, start: datetime):
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Alert:
    """One notification as a person received it."""

    channel: str  # "email" | "slack"
    alarm: str  # the alarm's logical id in the template (its name when not from the template)
    alarm_name: str
    state: str
    at: datetime
    body: str
    subject: str = ""
    recipient: str = ""
    path: Path | None = None
    payload: Any = None

    def as_json(self) -> dict[str, Any]:
        document = {
            "channel": self.channel,
            "alarm": self.alarm,
            "state": self.state,
            "time": self.at.isoformat(),
            "body": self.body,  # the email's text; a Slack message's text as Slack would show it
        }
        if self.channel == "slack":
            document["message"] = self.payload  # exactly what the webhook received
        return document


@dataclass(frozen=True)
class AlertChannel:
    """Where the stack's alarm notifications reach a person: an email address or the Slack webhook."""

    channel: str  # "email" | "slack"
    endpoint: str  # the address, or the name of the secret holding the webhook URL

    def as_json(self) -> dict[str, str]:
        return {"channel": self.channel, "endpoint": self.endpoint}


@dataclass
class Dispatch:
    """An upload and what its S3 event did."""

    bucket: str
    key: str
    invocations: list[Invocation] = field(default_factory=list)


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object as ListObjectVersions shows it."""

    bucket: str
    key: str
    version_id: str  # "null" in a bucket that was never versioned
    etag: str
    last_modified: datetime

    @property
    def identity(self) -> tuple[str, ...]:
        # A versioned bucket gives each PUT its own id; without versioning every PUT has id
        # "null", and only the content and time tell an overwrite from the object before it.
        if self.version_id != "null":
            return (self.bucket, self.key, self.version_id)
        return (self.bucket, self.key, self.etag, str(self.last_modified))


@dataclass
class AwsClients:
    s3: Any
    dynamodb: Any
    sqs: Any
    sns: Any
    kms: Any
    cloudwatch: Any
    secretsmanager: Any
    logs: Any
    dynamodbstreams: Any
    scheduler: Any

    @classmethod
    def for_endpoint(cls, endpoint_url: str, region: str) -> AwsClients:
        config = Config(retries={"mode": "standard", "max_attempts": 3})
        kwargs = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "config": config,
            "aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
        session = boto3.session.Session()
        return cls(
            **{name: session.client(name, **kwargs) for name in cls.__dataclass_fields__}  # type: ignore[call-overload]
        )


def slack_secret_parameter(template_path: Path) -> str | None:
    """The template parameter that names the notifier's webhook secret, when the template has one."""
    return parameter_feeding(template_path, SLACK_SECRET_VARIABLE)


def email_subscription_parameter(template_path: Path) -> str | None:
    """The template parameter an email subscription's endpoint is, when the template has one."""
    for resource in (load_template(template_path).get("Resources") or {}).values():
        properties = resource.get("Properties") or {}
        endpoint = properties.get("Endpoint")
        if (
            resource.get("Type") == "AWS::SNS::Subscription"
            and properties.get("Protocol") == "email"
            and isinstance(endpoint, dict)
            and "Ref" in endpoint
        ):
            return str(endpoint["Ref"])
    return None


def parameter_feeding(template_path: Path, variable: str) -> str | None:
    """The template parameter a function's environment ``variable`` is set from, if any."""
    template = load_template(template_path)
    environments = [((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}]
    environments += [
        (r.get("Properties") or {}).get("Environment") or {}
        for r in (template.get("Resources") or {}).values()
    ]
    for environment in environments:
        value = (environment.get("Variables") or {}).get(variable)
        if isinstance(value, dict) and value.get("Ref") in (template.get("Parameters") or {}):
            return str(value["Ref"])
    return None


class LocalCloud:
    def __init__(
        self,
        *,
        out_dir: Path,
        template_path: Path = DEFAULT_TEMPLATE,
        model_dir: Path = DEFAULT_MODEL_DIR,
        parameters: dict[str, str] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        port: int = 0,
        clock: Any = None,
        slack_receiver: bool = False,
        listener: Callable[[str, Any], None] | None = None,
    ):
        self.out_dir = out_dir
        self.template_path = template_path
        self.model_dir = model_dir.resolve()
        self.parameters = dict(parameters or {})
        self.stack_name = stack_name
        self.port = port
        self.clock = clock or RealClock()
        self.want_slack_receiver = slack_receiver
        self.listener = listener or (lambda kind, payload: None)
        self.aws: EmbeddedAws | None = None
        self.stack: LocalStack
        self.clients: AwsClients
        self.runtime: LambdaRuntime
        self.evaluator: CloudWatchAlarmEvaluator
        self.streams: StreamPoller
        self.outbox = EmailOutbox(out_dir / "outbox")
        self.webhook: WebhookReceiver | None = None
        self.stand_in_email: str | None = None  # LOCAL_ALERT_EMAIL, when the caller named no channel
        self.alerts: list[Alert] = []
        self.alarm_runs: list[AlarmRun] = []
        self._deliveries: queue.Queue[SnsDelivery] = queue.Queue()
        self._sns_receiver: SnsDeliveryReceiver | None = None
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None
        self._work_lock = threading.RLock()  # uploads, evaluations and deliveries, one at a time
        self._warned_alarms: set[str] = set()  # alarms named once as not evaluated locally
        self._schedule_runs: dict[str, datetime] = {}  # each schedule's last run, on the clock

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> LocalCloud:
        from modelwatch.aws import reset_clients

        if self.aws is not None:
            return self  # already running (``with cloud.start():`` starts it once)
        if not (self.model_dir / "metadata.json").is_file():
            raise UserError(
                f"no model in {self.model_dir} (metadata.json is missing); build one with "
                "`modelwatch model build` or pass --model-dir"
            )
        # Each local cloud has its own moto process, so it starts from an empty account.
        self._sns_receiver = SnsDeliveryReceiver(self._deliveries, self.clock)
        try:
            self.aws = start_moto_server(
                self.port,
                deliver_to=self._sns_receiver.url,
                log_path=self.out_dir / "logs" / "embedded-aws.log",
                wait=False,
            )
            self.clients = AwsClients.for_endpoint(self.aws.endpoint_url, LOCAL_REGION)
            slack_secret = self._slack_secret_name()
            self.stand_in_email = self._stand_in_alert_email()
            # Translating the template needs no AWS: it overlaps moto loading in its process.
            builder = StackBuilder(
                self.template_path,
                self.parameters,
                clients=self.clients,
                stack_name=self.stack_name,
                project_root=self.template_path.parent,
            )
            self.aws.wait_ready()
            if slack_secret is not None:
                self.webhook = WebhookReceiver()
                self.clients.secretsmanager.create_secret(Name=slack_secret, SecretString=self.webhook.url)
            self.stack = builder.build()
            # Functions share this process's modelwatch package (in Lambda each has its own), so
            # clients cached by an earlier local cloud in the same process must not leak in.
            # (What a handler caches itself goes with its module, which each cloud imports anew.)
            reset_clients()
            self.runtime = LambdaRuntime(
                self.stack.functions,
                endpoint_url=self.aws.endpoint_url,
                region=self.stack.region,
                model_dir=self.model_dir,
                log_dir=self.out_dir / "logs",
                sqs=self.clients.sqs,
                model_layers=self._model_layers(),
                clock=self.clock.now,
            )
            self.streams = StreamPoller(
                self.stack.stream_mappings,
                streams=self.clients.dynamodbstreams,
                runtime=self.runtime,
                region=self.stack.region,
                destinations=destination_sender(self.clients.sqs, self.clients.sns),
                now=self.clock.now,
                stamp=isinstance(self.clock, VirtualClock),
                listener=self.listener,
            )
            self.streams.start()  # before anything writes: TRIM_HORIZON and LATEST alike
            self.evaluator = CloudWatchAlarmEvaluator(
                self.clients.cloudwatch,
                self.clients.sns,
                region=self.stack.region,
                account_id=self.stack.account_id,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _model_layers(self) -> ModelLayers | None:
        """The stack's layers and functions in the embedded Lambda, so a promotion can switch
        the model layer as in AWS (modelwatch.local.layers); None without a ModelLayer."""
        # SAM names a LayerVersion's logical id after the layer with a content hash appended.
        model_layer = next(
            (
                r
                for r in self.stack.of_type("AWS::Lambda::LayerVersion")
                if r.logical_id.startswith("ModelLayer")
            ),
            None,
        )
        if model_layer is None:
            return None
        layers = [
            {"name": str(resource.ref).split(":")[6], "arn": resource.ref, "properties": resource.properties}
            for resource in self.stack.of_type("AWS::Lambda::LayerVersion")
        ]
        model_layers = ModelLayers(
            endpoint_url=self.endpoint_url,
            region=self.stack.region,
            s3=self.clients.s3,
            layer_name=str(model_layer.ref).split(":")[6],
            initial_model_dir=self.model_dir,
            extract_root=self.out_dir / "layers",
        )
        model_layers.register(layers, self.stack.functions)
        return model_layers

    def _slack_secret_name(self) -> str | None:
        """The secret the notifier will read the local webhook's URL from (set as its parameter,
        with the parameters that let the notifier post to the local http receiver).

        Slack is configured when the caller names the secret (``--param SlackWebhookSecretName=...``)
        or asks for the receiver (the demo); either way the secret holds the local receiver's URL,
        so what the notifier posts is what the receiver records.
        """
        parameter = slack_secret_parameter(self.template_path)
        if parameter is None:
            return None  # no notifier in this template yet: email only
        name = self.parameters.get(parameter) or (
            f"{self.stack_name}/slack-webhook" if self.want_slack_receiver else ""
        )
        if not name:
            return None
        self.parameters[parameter] = name
        for variable, value in LOCAL_RECEIVER_SETTINGS.items():
            setting = parameter_feeding(self.template_path, variable)
            if setting is not None:
                self.parameters.setdefault(setting, value)
        return name

    def _stand_in_alert_email(self) -> str | None:
        """LOCAL_ALERT_EMAIL as the email parameter when the caller named no alert channel (set
        as the parameter, so the stack subscribes it and its rule is satisfied); None otherwise.
        After _slack_secret_name, which names the Slack secret when the receiver is wanted."""
        parameter = email_subscription_parameter(self.template_path)
        named = {parameter, slack_secret_parameter(self.template_path), NO_CHANNEL_PARAMETER}
        if parameter is None or named & set(self.parameters):
            return None
        self.parameters[parameter] = LOCAL_ALERT_EMAIL
        return LOCAL_ALERT_EMAIL

    def stop(self) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.join(timeout=10)
        if getattr(self, "runtime", None) is not None:
            self.runtime.close()
        if self.webhook is not None:
            self.webhook.stop()
        if self.aws is not None:
            self.aws.stop()
            self.aws = None
        if self._sns_receiver is not None:
            self._sns_receiver.stop()
            self._sns_receiver = None

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- names --------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        assert self.aws is not None
        return self.aws.endpoint_url

    def bucket_for(self, key: str) -> str:
        """The bucket whose notification sends ``key`` to a function (the ingest bucket)."""
        for trigger in self.stack.s3_triggers:
            if trigger.matches(key):
                return trigger.bucket
        buckets = self.stack.of_type("AWS::S3::Bucket")
        if len(buckets) == 1:
            return str(buckets[0].ref)
        raise LookupError(f"no bucket of the stack sends {key!r} to a function")

    # -- S3 -> Lambda ----------------------------------------------------------------------------

    def upload(
        self, key: str, body: bytes, *, metadata: dict[str, str] | None = None, bucket: str | None = None
    ) -> Dispatch:
        """Put an object and deliver its ObjectCreated event the way the bucket notification would."""
        bucket = bucket or self.bucket_for(key)
        put = self.clients.s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata or {})
        return self.dispatch_object(bucket, key, put.get("VersionId"))

    def dispatch_object(self, bucket: str, key: str, version_id: str | None = None) -> Dispatch:
        """Deliver the ObjectCreated event of one object version (the latest when none is named)."""
        dispatch = Dispatch(bucket, key)
        triggers = self.stack.triggers_for(bucket, key)
        if not triggers:
            return dispatch
        request = {"Bucket": bucket, "Key": key}
        if version_id and version_id != "null":
            request["VersionId"] = version_id
        head = self.clients.s3.head_object(**request)
        with self._work_lock:
            for trigger in triggers:
                event = s3_object_created_event(
                    bucket=bucket,
                    key=key,
                    size=int(head["ContentLength"]),
                    etag=head["ETag"],
                    version_id=head.get("VersionId"),
                    event_time=self.clock.now(),
                    region=self.stack.region,
                    configuration_id=trigger.configuration_id,
                )
                invocation = self.runtime.invoke(trigger.function_logical_id, event)
                dispatch.invocations.append(invocation)
                self.listener("invocation", (key, invocation))
        return dispatch

    # -- DynamoDB streams -> Lambda -------------------------------------------------------------

    def drain_streams(self) -> list[StreamDelivery]:
        """Hand every stream record written so far to its function (and what those functions
        wrote in turn); a replay calls it after each write so alarms see the consequences."""
        with self._work_lock:
            return self.streams.drain()

    def poll_streams(self) -> list[StreamDelivery]:
        """One pass over the streams, as Lambda's poller makes between two reads."""
        with self._work_lock:
            return self.streams.poll()

    # -- alarms and SNS -------------------------------------------------------------------------

    def evaluate_alarms(self, now: datetime | None = None) -> list[AlarmRun]:
        """Evaluate every alarm at ``now`` (the clock's time by default) and deliver what it published."""
        with self._work_lock:
            try:
                runs = self.evaluator.evaluate_all(now or self.clock.now())
            finally:  # even when reading the metrics failed, say which alarms were skipped
                for name, why in self.evaluator.unsupported.items():
                    if name not in self._warned_alarms:
                        self._warned_alarms.add(name)
                        self.listener("warning", f"alarm {name} is not evaluated locally: {why}")
            self.alarm_runs.extend(runs)
            for run in runs:
                if run.changed:
                    self.listener("alarm", run)
            self.deliver_pending()
        return runs

    def run_schedules(self, now: datetime | None = None) -> list[Invocation]:
        """Invoke the function of each schedule whose rate has passed since its last run (at most
        once a call, as a late scheduler does not catch up) and deliver what it published. A
        schedule's clock starts at the first call: the replay's clock starts in the past."""
        now = now or self.clock.now()
        invocations = []
        with self._work_lock:
            for schedule in self.stack.schedules:
                last = self._schedule_runs.setdefault(schedule.name, now)
                if (now - last).total_seconds() < schedule.every_seconds:
                    continue
                self._schedule_runs[schedule.name] = now
                invocation = self.runtime.invoke(schedule.function_logical_id, json.loads(schedule.input))
                invocations.append(invocation)
                self.listener("invocation", (f"schedule {schedule.name}", invocation))
            if invocations:
                self.deliver_pending()
        return invocations

    def alert_channels(self) -> list[AlertChannel]:
        """The channels the template's SNS subscriptions reach, as deployed with these parameters."""
        channels = []
        for subscription in self.clients.sns.list_subscriptions()["Subscriptions"]:
            if subscription["Protocol"].startswith("email"):
                channels.append(AlertChannel("email", subscription["Endpoint"]))
            elif subscription["Protocol"] == "lambda":
                function = self.runtime.by_arn(subscription["Endpoint"])
                secret = function.spec.environment.get(SLACK_SECRET_VARIABLE) if function else None
                if secret:
                    channels.append(AlertChannel("slack", secret))
        return list(dict.fromkeys(channels))  # a notifier on two topics is still one Slack channel

    def alarm_states(self) -> dict[str, str]:
        """State of each template alarm, by logical id."""
        states = {}
        entries = self.clients.cloudwatch.describe_alarms(
            AlarmNames=[a.name for a in self.stack.alarms.values()]
        )["MetricAlarms"]
        by_name = {entry["AlarmName"]: entry["StateValue"] for entry in entries}
        for logical_id, alarm in self.stack.alarms.items():
            states[logical_id] = by_name.get(alarm.name, "INSUFFICIENT_DATA")
        return states

    def deliver_pending(self) -> list[Alert]:
        delivered: list[Alert] = []
        with self._work_lock:
            while True:
                try:
                    delivery = self._deliveries.get_nowait()
                except queue.Empty:
                    break
                delivered.extend(self._deliver(delivery))
        return delivered

    def _alarm_fields(self, message: str) -> tuple[str, str, str]:
        try:
            document = json.loads(message)
        except json.JSONDecodeError:
            return "", "", ""
        if not isinstance(document, dict):
            return "", "", ""
        name = str(document.get("AlarmName", ""))
        return self.stack.alarm_logical_id(name) or name, name, str(document.get("NewStateValue", ""))

    def _deliver(self, delivery: SnsDelivery) -> list[Alert]:
        logical_id, alarm_name, state = self._alarm_fields(delivery.message)
        alerts: list[Alert] = []
        if delivery.protocol.startswith("email"):
            sent = self.outbox.deliver(delivery)
            alerts.append(
                Alert(
                    "email",
                    logical_id,
                    alarm_name,
                    state,
                    delivery.timestamp,
                    sent.body,
                    subject=sent.subject,
                    recipient=sent.recipient,
                    path=sent.path,
                )
            )
        elif delivery.protocol == "lambda":
            function = self.runtime.by_arn(delivery.endpoint)
            if function is None:
                self.listener("warning", f"SNS subscription to {delivery.endpoint}: no such local function")
                return []
            seen = len(self.webhook.requests) if self.webhook else 0
            event = sns_event(
                subscription_arn=delivery.subscription_arn,
                topic_arn=delivery.topic_arn,
                message_id=delivery.message_id,
                subject=delivery.subject,
                message=delivery.message,
                timestamp=delivery.timestamp,
                region=self.stack.region,
            )
            invocation = self.runtime.invoke(function.spec.logical_id, event)
            self.listener("invocation", (delivery.subject or "", invocation))
            if self.webhook is not None:
                for request in self.webhook.requests[seen:]:
                    try:
                        payload = request.json()
                    except ValueError:
                        payload = request.body.decode("utf-8", "replace")
                    alerts.append(
                        Alert(
                            "slack",
                            logical_id,
                            alarm_name,
                            state,
                            delivery.timestamp,
                            slack_text(payload),
                            payload=payload,
                        )
                    )
        for alert in alerts:
            self.alerts.append(alert)
            self.listener("alert", alert)
        return alerts

    # -- the real-clock loop (`local up`) --------------------------------------------------------

    def run_in_background(self) -> None:
        # Object versions present now are not new. Listed before the loop starts, so an upload
        # made right after this returns cannot be mistaken for one of them.
        seen = {version.identity for version in self._new_versions(set())}
        self._loop = threading.Thread(
            target=self._poll_forever, args=(seen,), name="local-cloud-loop", daemon=True
        )
        self._loop.start()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the background loop between two polls: what is uploaded meanwhile is seen in one listing."""
        with self._work_lock:
            yield

    def poll_uploads(self, seen: set[tuple[str, ...]]) -> list[Dispatch]:
        """Deliver one event per object version not in ``seen`` (which it extends), oldest first.

        S3 sends one notification per PUT, and in a versioned bucket each PUT is a version of
        its own: two quick overwrites of a key are two events, each naming its versionId, even
        when both land between two polls. In a bucket without versioning an overwrite replaces
        the object, so only the last of the PUTs between two polls can be seen.
        """
        dispatches = []
        with self._work_lock:  # listing and dispatching as one step: see paused()
            for version in self._new_versions(seen):
                seen.add(version.identity)
                try:
                    dispatches.append(self.dispatch_object(version.bucket, version.key, version.version_id))
                except Exception as problem:  # keep serving other uploads
                    self.listener("warning", f"{version.key}: {type(problem).__name__}: {problem}")
        return dispatches

    def _poll_forever(self, seen: set[tuple[str, ...]]) -> None:
        next_evaluation = 0.0
        last_failure = ""
        while not self._stop.is_set():
            self.poll_uploads(seen)
            try:
                self.poll_streams()
            except Exception as problem:  # keep serving uploads; say so once per distinct failure
                failure = f"reading the DynamoDB streams failed: {type(problem).__name__}: {problem}"
                if failure != last_failure:
                    self.listener("warning", failure)
                last_failure = failure
            if time.monotonic() >= next_evaluation:
                try:
                    self.evaluate_alarms()
                    last_failure = ""
                except Exception as problem:  # keep serving; say so once per distinct failure
                    failure = f"alarm evaluation failed: {type(problem).__name__}: {problem}"
                    if failure != last_failure:
                        self.listener("warning", failure)
                    last_failure = failure
                next_evaluation = time.monotonic() + REAL_CLOCK_EVALUATION_SECONDS
                try:
                    self.run_schedules()
                except Exception as problem:  # keep serving; say so once per distinct failure
                    failure = f"running the schedules failed: {type(problem).__name__}: {problem}"
                    if failure != last_failure:
                        self.listener("warning", failure)
                    last_failure = failure
            self._stop.wait(POLL_INTERVAL_SECONDS)

    def _new_versions(self, seen: set[tuple[str, ...]]) -> list[ObjectVersion]:
        """Object versions under the notifications' prefixes that are not in ``seen``, oldest first."""
        listed: list[ObjectVersion] = []
        for bucket, prefix in sorted({(t.bucket, t.prefix) for t in self.stack.s3_triggers}):
            with contextlib.suppress(Exception):  # a bucket deleted by hand: nothing to deliver
                paginator = self.clients.s3.get_paginator("list_object_versions")
                for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                    listed.extend(
                        ObjectVersion(
                            bucket,
                            item["Key"],
                            item.get("VersionId") or "null",
                            item["ETag"],
                            item["LastModified"],
                        )
                        for item in page.get("Versions", [])
                    )
        new: dict[tuple[str, ...], tuple[datetime, int, ObjectVersion]] = {}
        for position, version in enumerate(listed):
            if version.identity not in seen:
                # S3 lists a key's versions newest first: of two with the same time, the one
                # listed later is older, and events go out in upload order.
                new.setdefault(version.identity, (version.last_modified, -position, version))
        return [version for _, _, version in sorted(new.values(), key=lambda entry: entry[:2])]
