"""Running the template's functions in this process the way Lambda runs them.

One warm instance per function: its app.py is imported once (the cold start) and the
module, with whatever it cached (model, clients), serves every later invocation. Each
invocation sees the environment Lambda would give it: the template's variables (Globals
merged, references resolved to the local names), the Lambda runtime variables, and
AWS_ENDPOINT_URL pointing at the embedded AWS, so function code has no local branch.
os.environ is process-wide, so invocations are serialised by one lock. So is the
functions' clock (modelwatch.clock): the local cloud's, so that in a replay a batch is
processed at the replay's virtual time, not hours after the time it is stamped with.

Asynchronous invocations (S3 and SNS events) follow Lambda's error handling: a failed
event is retried MaximumRetryAttempts times (EventInvokeConfig), then its record goes to
the OnFailure destination queue, as Lambda sends it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO
from urllib.parse import quote_plus

from modelwatch import clock as processing_clock

# The model layer's data contract (SPEC "Model layer"): Lambda mounts it at /opt/model; locally it
# is a directory, so environment values under this path are rewritten to that directory.
MODEL_LAYER_MOUNT = "/opt/model"
# Dummy credentials for the embedded AWS: a developer's real profile must never be used by a
# function that believes it talks to the local endpoint.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
# Variables of the developer's shell that would send boto3 elsewhere than the local endpoint.
_SHELL_AWS_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE")


@dataclass
class LocalLambdaContext:
    """The context object's attributes and method as the Python runtime provides them."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    log_group_name: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_stream_name: str = field(
        default_factory=lambda: f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    )
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


@dataclass
class FunctionSpec:
    """One AWS::Lambda::Function of the translated template, names resolved."""

    logical_id: str
    name: str
    arn: str
    handler: str
    code_dir: Path
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    log_group: str
    max_retry_attempts: int = 2  # Lambda's default for asynchronous invocations
    on_failure_queue_url: str | None = None
    layers: tuple[str, ...] = ()  # layer version ARNs, as the template gives them


@dataclass
class Invocation:
    function: str
    request_id: str
    ok: bool
    result: Any
    error: str | None
    seconds: float
    attempts: int


class _RoutedStream(io.TextIOBase):
    """stdout for functions: writes go to the log of the function being invoked.

    Powertools binds its log handler to sys.stdout when the module is imported, and
    functions with the same service name share one Python logger in this process; routing
    by invocation keeps each function's lines in its own log, as CloudWatch Logs would.
    """

    def __init__(self, fallback: TextIO):
        self.target: TextIO | io.TextIOBase = fallback

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()


class _Discarded(io.TextIOBase):
    """Where a closed stack's functions' logging goes."""

    def write(self, text: str) -> int:
        return len(text)


class LocalFunction:
    """A warm instance of one function; its log (what CloudWatch Logs would hold) goes to a file."""

    def __init__(self, spec: FunctionSpec, log: TextIO):
        self.spec = spec
        self.log = log
        self.module: ModuleType | None = None
        self.model_dir: Path | None = None  # what /opt/model was when the module was loaded

    def _handler(self) -> Callable[[dict[str, Any], Any], Any]:
        module_path, _, function_name = self.spec.handler.rpartition(".")
        if self.module is None:
            source = self.spec.code_dir / (module_path.replace(".", "/") + ".py")
            module_name = f"modelwatch_local_{self.spec.logical_id}_{uuid.uuid4().hex[:8]}"
            loader_spec = importlib.util.spec_from_file_location(module_name, source)
            if loader_spec is None or loader_spec.loader is None:
                raise FileNotFoundError(f"{self.spec.logical_id}: no handler module at {source}")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)  # the cold start: runs under the function's environment
            self.module = module
        return getattr(self.module, function_name)

    def invoke_once(self, event: dict[str, Any], context: LocalLambdaContext) -> Any:
        return self._handler()(event, context)


class LambdaRuntime:
    """The functions of one stack, invoked one at a time."""

    def __init__(
        self,
        functions: dict[str, FunctionSpec],
        *,
        endpoint_url: str,
        region: str,
        model_dir: Path,
        log_dir: Path,
        sqs: Any,
        model_layers: Any = None,
        clock: Callable[[], datetime] | None = None,
    ):
        """``model_layers`` (modelwatch.local.layers.ModelLayers): the function's model layer
        version, asked before each invocation; without, /opt/model is always ``model_dir``.
        ``clock``: the functions' "now" (modelwatch.clock) while they run, the local cloud's
        (a replay's virtual time); without, the wall clock."""
        self.clock = clock
        self.endpoint_url = endpoint_url
        self.region = region
        self.model_dir = model_dir
        self.model_layers = model_layers
        self.sqs = sqs
        self._lock = threading.RLock()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self._logs: list[TextIO] = []
        self.functions: dict[str, LocalFunction] = {}
        for logical_id, spec in functions.items():
            log = (log_dir / f"{logical_id}.log").open("a", encoding="utf-8", buffering=1)
            self._logs.append(log)
            self.functions[logical_id] = LocalFunction(spec, log)
        self.invocations: list[Invocation] = []
        self._stdout = _RoutedStream(sys.__stdout__ or io.StringIO())

    def by_arn(self, arn: str) -> LocalFunction | None:
        base = ":".join(arn.split(":")[:7])  # a qualified ARN (:alias or :version) names the same code
        return next((f for f in self.functions.values() if f.spec.arn == base or f.spec.name == arn), None)

    def lambda_environment(self, spec: FunctionSpec, model_dir: Path | None = None) -> dict[str, str]:
        model_dir = model_dir or self.model_dir
        environment = {
            **LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python_local",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            # No X-Ray daemon runs locally; the SDK would only complain about missing segments.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        for name, value in spec.environment.items():
            if value == MODEL_LAYER_MOUNT or value.startswith(MODEL_LAYER_MOUNT + "/"):
                value = str(model_dir) + value[len(MODEL_LAYER_MOUNT) :]
            environment[name] = value
        return environment

    @contextlib.contextmanager
    def _lambda_process_state(self, function: LocalFunction) -> Iterator[None]:
        saved = dict(os.environ)
        for name in _SHELL_AWS_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(self.lambda_environment(function.spec, function.model_dir))
        try:
            # print() and the Powertools logger (bound to sys.stdout at import) write the log file.
            self._stdout.target = function.log
            with contextlib.redirect_stdout(self._stdout), processing_clock.running_on(self.clock):
                yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def invoke(self, logical_id: str, event: dict[str, Any], *, asynchronous: bool = True) -> Invocation:
        function = self.functions[logical_id]
        spec = function.spec
        attempts = 1 + (spec.max_retry_attempts if asynchronous else 0)
        with self._lock:
            self._follow_model_layer(function)
            started = time.perf_counter()
            error = None
            for attempt in range(1, attempts + 1):
                context = LocalLambdaContext(
                    spec.name, spec.arn, spec.memory_mb, spec.timeout_seconds, spec.log_group
                )
                try:
                    with self._lambda_process_state(function):
                        result = function.invoke_once(event, context)
                    outcome = Invocation(
                        spec.logical_id,
                        context.aws_request_id,
                        True,
                        result,
                        None,
                        time.perf_counter() - started,
                        attempt,
                    )
                    self.invocations.append(outcome)
                    return outcome
                except Exception as problem:  # a function error: Lambda records it and retries
                    error = f"{type(problem).__name__}: {problem}"
                    function.log.write(f"[ERROR] {context.aws_request_id} {error}\n{traceback.format_exc()}")
            outcome = Invocation(
                spec.logical_id,
                context.aws_request_id,
                False,
                None,
                error,
                time.perf_counter() - started,
                attempts,
            )
            self.invocations.append(outcome)
            if asynchronous:
                self._send_to_on_failure(spec, event, outcome)
            return outcome

    def _follow_model_layer(self, function: LocalFunction) -> None:
        """A function whose model layer version changed (promotion, rollback) starts cold with
        /opt/model mapped to the new version's content, as Lambda starts new instances."""
        model_dir = self.model_dir
        if self.model_layers is not None:
            model_dir = self.model_layers.model_dir_for(function.spec.name) or self.model_dir
        if function.model_dir != model_dir:
            if function.module is not None:
                function.log.write(f"[INFO] model layer changed: cold start with /opt/model = {model_dir}\n")
            function.module = None
            function.model_dir = model_dir

    def _send_to_on_failure(self, spec: FunctionSpec, event: dict[str, Any], outcome: Invocation) -> None:
        if not spec.on_failure_queue_url:
            return
        record = {  # the invocation record Lambda sends to an on-failure destination
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {
                "requestId": outcome.request_id,
                "functionArn": f"{spec.arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": outcome.attempts,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {
                "errorMessage": outcome.error,
                "errorType": (outcome.error or "").split(":")[0],
            },
        }
        self.sqs.send_message(QueueUrl=spec.on_failure_queue_url, MessageBody=json.dumps(record, default=str))

    def close(self) -> None:
        for log in self._logs:
            with contextlib.suppress(Exception):
                log.close()
        # The functions' log handlers live on in this process's shared loggers ("modelwatch" gets
        # copies of each function's handler); with its files closed, the stack's stream drops what
        # they write instead of failing on every line a later stack in the process logs.
        self._stdout.target = _Discarded()


# --------------------------------------------------------------------------- events


def _aws_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def s3_object_created_event(
    *,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    version_id: str | None,
    event_time: datetime,
    region: str,
    configuration_id: str,
    event_name: str = "ObjectCreated:Put",
) -> dict[str, Any]:
    """An S3 event notification record as S3 sends it; the key URL-encoded the way S3 encodes it."""
    object_fields: dict[str, Any] = {
        "key": quote_plus(key, safe="/"),  # S3 writes spaces as "+" and non-ASCII as %xx, keeps "/"
        "size": size,
        "eTag": etag.strip('"'),
        "sequencer": f"{time.time_ns():X}"[-18:],
    }
    if version_id and version_id != "null":
        object_fields["versionId"] = version_id
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": _aws_time(event_time),
                "eventName": event_name,
                "userIdentity": {"principalId": "AWS:LOCALUSER"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {
                    "x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                    "x-amz-id-2": uuid.uuid4().hex,
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": configuration_id,
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "LOCALOWNER"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": object_fields,
                },
            }
        ]
    }


def sns_event(
    *,
    subscription_arn: str,
    topic_arn: str,
    message_id: str,
    subject: str | None,
    message: str,
    timestamp: datetime,
    region: str,
) -> dict[str, Any]:
    """An SNS-to-Lambda event as SNS delivers it (one record per message)."""
    endpoint = f"https://sns.{region}.amazonaws.com"
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "Sns": {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "TopicArn": topic_arn,
                    "Subject": subject,
                    "Message": message,
                    "Timestamp": _aws_time(timestamp),
                    "SignatureVersion": "1",
                    "Signature": "LOCAL",  # nothing signs locally; the notifier does not verify signatures
                    "SigningCertUrl": f"{endpoint}/SimpleNotificationService-local.pem",
                    "UnsubscribeUrl": f"{endpoint}/?Action=Unsubscribe&SubscriptionArn={subscription_arn}",
                    "MessageAttributes": {},
                },
            }
        ]
    }


def stderr_safe(text: str) -> None:
    """Print to the terminal even while a function has stdout redirected to its log."""
    stream = sys.__stdout__ or io.StringIO()
    stream.write(text + "\n")
    stream.flush()
