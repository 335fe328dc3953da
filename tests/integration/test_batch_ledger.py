"""Each batch counted once: duplicates, overwrites, crashes, and every AWS call failing in turn.

Faults are injected into the real boto3 clients the handler uses (botocore ``before-call``
and ``after-call`` hooks against in-process moto), because moto cannot be told to fail
one call. ``Crash`` stands for the process dying (out of memory, a timeout): it is a
BaseException, so no ``except Exception`` in the code under test can clean up after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from modelwatch.aws import client
from modelwatch.ledger import BatchLedger, batch_state
from modelwatch.prediction_log import WRITE_CLIENT_CONFIG as PREDICTION_LOG_CLIENT_CONFIG
from tests.integration.conftest import BUCKET, load_handler, s3_event
from tests.lambda_context import LambdaContext
from tests.model_fixtures import churn_frame

LAMBDA_ATTEMPTS = 3  # an asynchronous invocation and Lambda's two retries


class Crash(BaseException):
    """The Lambda process dies here (injected)."""


def batch(stack, rows: int, seed: int, prefix: str) -> str:
    frame = churn_frame(rows, seed=seed, id_prefix=prefix)
    stack.put_actuals({row.record_id: int(row.churned) for row in frame.itertuples()})
    return frame.drop(columns=["churned"]).to_csv(index=False)


SEQUENCERS: dict[str, str] = {}  # version id -> S3's event sequencer, increasing per upload


def versioned_event(key: str, version_id: str) -> dict[str, Any]:
    event = s3_event(key)
    event["Records"][0]["s3"]["object"]["versionId"] = version_id
    event["Records"][0]["s3"]["object"]["sequencer"] = SEQUENCERS[version_id]
    return event


def upload(stack, key: str, body: str) -> str:
    version = stack.s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())["VersionId"]
    SEQUENCERS[version] = f"{time.time_ns():X}"
    return version


def version_reports(stack, key: str) -> dict[str, dict[str, Any]]:
    prefix = f"results/{key.removeprefix('incoming/')}/versions/"
    found = {}
    for name in stack.keys(prefix):
        if name.endswith("/report.json"):
            found[name.removeprefix(prefix).split("/")[0]] = json.loads(stack.read(name))
    return found


def sums(stack, model_name: str = "churn-test") -> dict[str, float | None]:
    found = {}
    for metric in ("BatchesProcessed", "RowsScored", "BatchesRejected"):
        point = stack.statistic(metric, model_name=model_name)
        found[metric] = point["Sum"] if point else None
    point = stack.statistic("ErrorRate", model_name=model_name)
    # Published as values with counts (one per labeled row): the sample count is the rows.
    found["ErrorRate samples"] = point["SampleCount"] if point else None
    return found


def test_identical_bytes_uploaded_again_count_once_and_the_report_says_duplicate(stack):
    key = "incoming/again.csv"
    body = batch(stack, 300, seed=41, prefix="dup")
    first = upload(stack, key, body)
    second = upload(stack, key, body)  # a new version, the same bytes
    assert first != second
    handler = load_handler("batch_monitor")
    for version in (first, second):
        handler.lambda_handler(versioned_event(key, version), LambdaContext())

    assert sums(stack) == {
        "BatchesProcessed": 1,
        "RowsScored": 300,
        "BatchesRejected": None,
        "ErrorRate samples": 300,
    }
    reports = version_reports(stack, key)
    assert reports[first]["status"] == "ok"
    assert reports[second]["status"] == "duplicate"
    assert reports[second]["duplicate_of"]["version_id"] == first
    assert reports[second]["duplicate_of"]["report"].endswith(f"/versions/{first}/report.json")
    assert reports[second]["metrics_published"] == []
    # The key's newest report keeps the scored results, not the duplicate's pointer.
    assert stack.report(key)["status"] == "ok" and stack.report(key)["batch"]["version_id"] == first


def test_the_same_bytes_under_a_new_key_are_a_duplicate_and_count_once(stack):
    # An upstream stuck re-sending yesterday's export under today's key
    body = batch(stack, 300, seed=44, prefix="resent")
    yesterday, today = "incoming/2026-11-30/export.csv", "incoming/2026-12-01/export.csv"
    handler = load_handler("batch_monitor")
    for key in (yesterday, today, today):  # today's event delivered twice
        version = upload(stack, key, body) if key == yesterday or not version_reports(stack, key) else None
        handler.lambda_handler(
            versioned_event(key, version or next(iter(version_reports(stack, key)))), LambdaContext()
        )

    # Then the rows count once: the resent file publishes nothing (no BatchesProcessed, so
    # StalenessAlarm fires when only resent files arrive), and its report says whose bytes
    assert sums(stack) == {
        "BatchesProcessed": 1,
        "RowsScored": 300,
        "BatchesRejected": None,
        "ErrorRate samples": 300,
    }
    report = stack.report(today)
    assert report["status"] == "duplicate" and report["metrics_published"] == []
    assert report["duplicate_of"]["key"] == yesterday
    assert report["duplicate_of"]["report"].endswith("/report.json")
    assert "StalenessAlarm" in report["duplicate_of"]["note"]
    assert stack.report(yesterday)["status"] == "ok"


def test_the_same_bytes_under_a_new_key_are_scored_when_the_first_upload_failed(stack):
    body = batch(stack, 150, seed=45, prefix="retry")
    handler = load_handler("batch_monitor")
    # The first key's batch fails on every attempt (an S3 outage, injected) and scores nothing
    first = upload(stack, "incoming/first.csv", body)
    predictions = next(step for step in STEPS if step.name == "S3 PutObject predictions")
    with injected(predictions, "outage"):
        outcome, _ = invoke_like_lambda(handler, versioned_event("incoming/first.csv", first))
    assert outcome.startswith("DLQ")
    # Then the same file put under another key is scored: nothing was counted for it yet
    second = upload(stack, "incoming/second.csv", body)
    handler.lambda_handler(versioned_event("incoming/second.csv", second), LambdaContext())
    assert stack.report("incoming/second.csv")["status"] == "ok"
    assert sums(stack)["RowsScored"] == 150 and sums(stack)["BatchesRejected"] is None


def test_a_changed_file_on_the_same_key_is_a_new_batch_with_its_own_results(stack):
    key = "incoming/changed.csv"
    first = upload(stack, key, batch(stack, 200, seed=42, prefix="c1"))
    second = upload(stack, key, batch(stack, 120, seed=43, prefix="c2"))
    handler = load_handler("batch_monitor")
    for version in (first, second):
        handler.lambda_handler(versioned_event(key, version), LambdaContext())

    assert sums(stack)["BatchesProcessed"] == 2 and sums(stack)["RowsScored"] == 320
    reports = version_reports(stack, key)
    assert (reports[first]["rows"], reports[second]["rows"]) == (200, 120)
    for version in (first, second):
        predictions = reports[version]["outputs"]["predictions"].removeprefix(f"s3://{BUCKET}/")
        assert f"/versions/{version}/" in predictions
        assert stack.read(predictions)  # each version keeps its own predictions
    assert stack.report(key)["batch"]["version_id"] == second
    # The older version processed again later (a redelivery) does not take the key back.
    handler.lambda_handler(versioned_event(key, first), LambdaContext())
    assert stack.report(key)["batch"]["version_id"] == second
    assert sums(stack)["BatchesProcessed"] == 2


def test_the_same_bytes_after_a_new_model_version_are_scored_again(stack, tmp_path, monkeypatch):
    import shutil

    key = "incoming/rescored.csv"
    body = batch(stack, 100, seed=44, prefix="m")
    first = upload(stack, key, body)
    load_handler("batch_monitor").lambda_handler(versioned_event(key, first), LambdaContext())
    model_dir = tmp_path / "model"
    shutil.copytree(stack.model_dir, model_dir)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    metadata["version"] = metadata["version"] + "-retrained"
    (model_dir / "metadata.json").write_text(json.dumps(metadata))
    monkeypatch.setenv("MODEL_DIR", str(model_dir))
    second = upload(stack, key, body)
    load_handler("batch_monitor").lambda_handler(versioned_event(key, second), LambdaContext())
    assert version_reports(stack, key)[second]["status"] == "ok"
    assert sums(stack)["BatchesProcessed"] == 2


# -- the fault matrix ---------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One AWS call of the batch monitor, told apart by its parameters."""

    name: str
    service: str
    operation: str
    matches: Callable[[dict[str, Any]], bool]


def _key(params: dict[str, Any]) -> str:
    return str(params.get("Key", ""))


STEPS = [
    Step("S3 GetObject batch", "s3", "GetObject", lambda p: _key(p).startswith("incoming/")),
    Step(
        "DynamoDB UpdateItem claim",
        "dynamodb",
        "UpdateItem",
        lambda p: p["UpdateExpression"].startswith("SET version_id"),
    ),
    Step("DynamoDB BatchWriteItem prediction log", "dynamodb", "BatchWriteItem", lambda p: True),
    Step("DynamoDB BatchGetItem actuals", "dynamodb", "BatchGetItem", lambda p: True),
    Step("S3 PutObject predictions", "s3", "PutObject", lambda p: _key(p).endswith("predictions.csv.gz")),
    Step("S3 PutObject version report", "s3", "PutObject", lambda p: "/versions/" in _key(p)),
    Step(
        "S3 GetObject key's report",
        "s3",
        "GetObject",
        lambda p: _key(p).endswith("/report.json") and "/versions/" not in _key(p),
    ),
    Step(
        "S3 PutObject key's report",
        "s3",
        "PutObject",
        lambda p: _key(p).endswith("/report.json") and "/versions/" not in _key(p),
    ),
    Step("S3 GetObject latest.json", "s3", "GetObject", lambda p: _key(p) == "results/latest.json"),
    Step("S3 PutObject latest.json", "s3", "PutObject", lambda p: _key(p) == "results/latest.json"),
    Step(
        "DynamoDB UpdateItem publish mark",
        "dynamodb",
        "UpdateItem",
        lambda p: p["UpdateExpression"].startswith("SET published_at"),
    ),
    Step("CloudWatch PutMetricData", "cloudwatch", "PutMetricData", lambda p: True),
]

VERSION_REPORT = next(step for step in STEPS if step.name == "S3 PutObject version report")
PUBLISH_MARK = next(step for step in STEPS if step.name == "DynamoDB UpdateItem publish mark")
# error: the call fails once (a throttle, a 500); outage: it fails every time;
# crash: the call succeeds, then the process dies before the next line; lost: the call
# succeeds, its response is lost, and botocore sends it again.
MODES = ("error", "outage", "crash", "lost")


@contextmanager
def injected(step: Step, mode: str) -> Iterator[dict[str, int]]:
    fired = {"count": 0}
    # The cached clients the handler uses: the prediction log writes through its own.
    clients = [client(step.service)]
    if step.service == "dynamodb":
        clients.append(client("dynamodb", config=PREDICTION_LOG_CLIENT_CONFIG))
    call = f"{clients[0].meta.service_model.service_id.hyphenize()}.{step.operation}"

    def remember(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        context["injected_params"] = dict(params)  # the API parameters; later hooks see the HTTP request

    def fault(context: dict[str, Any], **kwargs: Any) -> None:
        if not step.matches(context["injected_params"]):
            return
        if mode != "outage" and fired["count"]:
            return
        fired["count"] += 1
        if mode == "crash":
            raise Crash(f"process died after {step.name}")
        raise ClientError(
            {"Error": {"Code": "InternalError", "Message": f"injected failure of {step.name}"}},
            step.operation,
        )

    def lose_response(
        request_dict: dict[str, Any], attempts: int, caught_exception: Any, **kwargs: Any
    ) -> int | None:
        # botocore asks its retry handlers whether to send the request again; answering "yes,
        # now" to a call that succeeded is the response lost on the way back, after AWS applied
        # the call: botocore sends the same request again.
        if caught_exception is not None or attempts != 1 or fired["count"]:
            return None
        if not step.matches(request_dict["context"]["injected_params"]):
            return None
        fired["count"] += 1
        return 0

    hooks = [(f"before-parameter-build.{call}", remember)]
    if mode == "lost":
        hooks.append((f"needs-retry.{call}", lose_response))
    else:
        hooks.append((f"{'after' if mode == 'crash' else 'before'}-call.{call}", fault))
    for aws in clients:
        for name, hook in hooks:
            aws.meta.events.register(name, hook)
    try:
        yield fired
    finally:
        for aws in clients:
            for name, hook in hooks:
                aws.meta.events.unregister(name, hook)


def invoke_like_lambda(handler: Any, event: dict[str, Any]) -> tuple[str, int]:
    """An asynchronous invocation with Lambda's retries: the outcome and attempts used.
    After the last failed attempt the event goes to the dead-letter queue with the reason."""
    for attempt in range(1, LAMBDA_ATTEMPTS + 1):
        try:
            handler.lambda_handler(event, LambdaContext())
            return "ok", attempt
        except ClientError as failure:  # noqa: PERF203 - each retry is a new invocation
            reason = f"{failure.response['Error']['Code']} in {failure.operation_name}"
        except (Exception, Crash) as failure:
            reason = f"{type(failure).__name__}: {failure}"
    return f"DLQ: {reason}", LAMBDA_ATTEMPTS


def test_fault_matrix_every_batch_ends_in_one_report_and_metrics_once_or_in_the_dlq(stack, monkeypatch):
    rows = 150
    matrix, problems = [], []
    for number, (step, mode) in enumerate((step, mode) for step in STEPS for mode in MODES):
        # A model name per case: each case's datapoints are counted on their own.
        model_name = f"fault-{number}"
        monkeypatch.setenv("MODEL_NAME", model_name)
        key = f"incoming/faults/{number}.csv"
        version = upload(stack, key, batch(stack, rows, seed=100 + number, prefix=f"f{number}-"))
        handler = load_handler("batch_monitor")  # a cold start per case: MODEL_NAME is read once
        with injected(step, mode) as fired:
            outcome, attempts = invoke_like_lambda(handler, versioned_event(key, version))
        reports = version_reports(stack, key)
        counted = sums(stack, model_name)
        matrix.append((step.name, mode, fired["count"], outcome, attempts, len(reports), counted))

        expected_reports = 1
        expected = {
            "BatchesProcessed": 1,
            "RowsScored": rows,
            "BatchesRejected": None,
            "ErrorRate samples": rows,
        }
        if mode == "outage":
            # The event ends in the dead-letter queue, and nothing is published. The report
            # exists when the outage came after it was written (a redrive completes it).
            expected = dict.fromkeys(expected)
            expected_reports = int(STEPS.index(step) > STEPS.index(VERSION_REPORT))
            ok = outcome == f"DLQ: InternalError in {step.operation}"
        else:
            ok = outcome == "ok"
        if (step, mode) == (PUBLISH_MARK, "crash"):
            # The ledger's one window (modelwatch.ledger): marked, then the process died
            # before PutMetricData. The retry must not publish: at most once, never twice.
            expected = dict.fromkeys(expected)
        if (step.operation, mode) == ("PutMetricData", "lost"):
            # CloudWatch takes no idempotency token: the datapoints botocore sends again count
            # twice (averages unchanged, sums and sample counts doubled). README, "Limits".
            expected = {name: None if value is None else 2 * value for name, value in expected.items()}
        if fired["count"] == 0:
            problems.append(f"{step.name} / {mode}: the fault never fired")
        if not ok or counted != expected or len(reports) != expected_reports:
            problems.append(f"{step.name} / {mode}: {outcome}, {len(reports)} reports, {counted}")
        if reports and outcome == "ok":
            assert next(iter(reports.values()))["status"] == "ok"

    table = [
        "",
        f"{'AWS call':<40}{'fault':<8}{'fired':>6}  {'outcome':<36}{'tries':>6}{'reports':>8}  metrics",
    ]
    for name, mode, fired_count, outcome, attempts, report_count, counted in matrix:
        published = ", ".join(f"{metric}={value:g}" for metric, value in counted.items() if value is not None)
        table.append(
            f"{name:<40}{mode:<8}{fired_count:>6}  {outcome:<36}{attempts:>6}{report_count:>8}  "
            + (published or "-")
        )
    print("\n".join(table))
    assert not problems, "\n".join(problems + table)


def test_if_putmetricdata_and_then_the_unmark_fail_the_metrics_are_lost_not_doubled(stack):
    # The documented window of the ledger (modelwatch.ledger): at most once, never twice.
    key = "incoming/lost.csv"
    version = upload(stack, key, batch(stack, 90, seed=45, prefix="l"))
    handler = load_handler("batch_monitor")
    unmark = Step(
        "DynamoDB UpdateItem unmark",
        "dynamodb",
        "UpdateItem",
        lambda p: p["UpdateExpression"].startswith("REMOVE published_at"),
    )
    with injected(STEPS[-1], "error"), injected(unmark, "error") as fired:
        outcome, attempts = invoke_like_lambda(handler, versioned_event(key, version))
    assert fired["count"] == 1 and (outcome, attempts) == ("ok", 2)
    assert sums(stack)["BatchesProcessed"] is None
    assert version_reports(stack, key)[version]["status"] == "ok"


def test_a_crash_leaves_nothing_that_blocks_the_retry(stack):
    # The process dies while the actuals are fetched (out of memory): Lambda's retry a
    # minute later must run, not find the batch locked until the record expires.
    key = "incoming/crashed.csv"
    version = upload(stack, key, batch(stack, 110, seed=46, prefix="x"))
    handler = load_handler("batch_monitor")
    actuals = next(step for step in STEPS if step.name == "DynamoDB BatchGetItem actuals")
    with injected(actuals, "crash"), pytest.raises(Crash):
        handler.lambda_handler(versioned_event(key, version), LambdaContext())
    result = load_handler("batch_monitor").lambda_handler(versioned_event(key, version), LambdaContext())
    assert result["batches"][0]["status"] == "ok"
    assert sums(stack)["BatchesProcessed"] == 1


def test_a_newer_report_written_between_the_read_and_the_write_is_kept(stack):
    # Given a batch whose key's newest report is written by another invocation (a newer
    # version) after this one read it and before this one writes it
    key = "incoming/raced.csv"
    version = upload(stack, key, batch(stack, 80, seed=47, prefix="r"))
    newest_key = "results/raced.csv/report.json"
    newer = {"status": "ok", "uploaded_at": "2999-01-01T00:00:00+00:00", "batch": {"version_id": "newer"}}
    aws = client("s3")

    def other_writer_first(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("Key") == newest_key and not stack.keys(newest_key):
            stack.s3.put_object(Bucket=BUCKET, Key=newest_key, Body=json.dumps(newer).encode())

    aws.meta.events.register("before-parameter-build.s3.PutObject", other_writer_first)
    try:
        load_handler("batch_monitor").lambda_handler(versioned_event(key, version), LambdaContext())
    finally:
        aws.meta.events.unregister("before-parameter-build.s3.PutObject", other_writer_first)

    # Then the conditional write lost, read again, and left the newer report in place
    assert json.loads(stack.read(newest_key)) == newer
    assert version_reports(stack, key)[version]["status"] == "ok"  # its own report is written


def test_an_attempt_that_fails_after_scoring_is_marked_failed_for_the_label_join(stack):
    """The label join waits for a batch whose ids are logged until it is published, unless
    its attempt is over: a PutMetricData outage (injected: CloudWatch cannot be made to fail
    otherwise) ends every attempt after the ledger's publish mark was taken back, and the
    item must say the attempt failed, or each join of its labels would wait its whole time."""
    key = "incoming/unpublished.csv"
    version = upload(stack, key, batch(stack, 60, seed=48, prefix="u"))
    handler = load_handler("batch_monitor")
    with injected(STEPS[-1], "outage"):
        outcome, _ = invoke_like_lambda(handler, versioned_event(key, version))
    assert outcome.startswith("DLQ")
    items = [
        item for item in stack.dynamodb.scan(TableName=stack.ledger_table)["Items"] if "claimed_at" in item
    ]
    assert len(items) == 1 and "published_at" not in items[0] and "failed_at" in items[0]
    state = batch_state(BatchLedger(stack.dynamodb, stack.ledger_table), items[0]["id"]["S"])
    assert state is not None and state.failed and not state.published
    # The next attempt claims it again: no longer failed while it runs, published after
    assert load_handler("batch_monitor").lambda_handler(versioned_event(key, version), LambdaContext())
    state = batch_state(BatchLedger(stack.dynamodb, stack.ledger_table), items[0]["id"]["S"])
    assert state is not None and state.published and not state.failed
