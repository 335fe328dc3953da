"""Late labels: a batch scored without its labels, then its actuals in instalments.

The stream records are built here as DynamoDB Streams delivers them to Lambda (keys
only, the table's StreamViewType); the local cloud's delivery of real stream records is
tested in tests/e2e. Every number is checked against scikit-learn on the rows labeled so
far, with the model loaded independently of the handler.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from sklearn import metrics as skm

from modelwatch import label_join as label_join_module
from modelwatch.config import JoinConfig, MonitorConfig
from modelwatch.label_join import LabelJoin
from modelwatch.monitor import BatchMonitor
from modelwatch.results import BatchObject
from tests.integration.conftest import BUCKET, load_handler, s3_event
from tests.lambda_context import LambdaContext
from tests.model_fixtures import CATEGORICAL, NUMERIC, churn_frame

FEATURES = NUMERIC + CATEGORICAL
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/actuals/stream/2026-12-01T00:00:00"


def stream_event(record_ids: list[str], name: str = "INSERT") -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventID": f"{number}",
                "eventName": name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "Keys": {"record_id": {"S": record_id}},
                    "SequenceNumber": f"{number:021d}",
                    "SizeBytes": 40,
                    "StreamViewType": "KEYS_ONLY",
                },
                "eventSourceARN": STREAM_ARN,
            }
            for number, record_id in enumerate(record_ids, start=1)
        ]
    }


@pytest.fixture(params=["whole batch re-read", "arrived labels only"])
def reread(request, monkeypatch) -> str:
    """Both ways a join reads labels: a batch up to FULL_RECHECK_ROWS has every row's label
    read again; a larger one only the arrived labels' (the threshold lowered to 0 here, so
    this file's small batches take the large-batch path)."""
    if request.param == "arrived labels only":
        monkeypatch.setattr(label_join_module, "FULL_RECHECK_ROWS", 0)
    return str(request.param)


@pytest.fixture
def unlabeled_batch(stack):
    """A 600-row batch scored with no actuals at all, and its true labels kept aside."""
    frame = churn_frame(600, seed=61, id_prefix="late")
    key = "incoming/late/batch.csv"
    stack.put(key, frame.drop(columns=["churned"]).to_csv(index=False))
    result = load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    assert result["batches"][0]["status"] == "ok"
    assert stack.report(key)["labeled_rows"] == 0
    return key, frame


def join(stack, labels: dict[str, int], handler=None) -> dict[str, Any]:
    stack.put_actuals(labels)
    handler = handler or load_handler("label_join")
    return handler.lambda_handler(stream_event(list(labels)), LambdaContext.of("LabelJoinFunction"))


def expected(stack, frame, labels: dict[str, int]) -> dict[str, float]:
    """scikit-learn on the rows labeled so far."""
    model = joblib.load(stack.model_dir / "model.joblib")
    rows = frame.set_index("record_id").loc[list(labels)]
    predicted = model.predict(rows[FEATURES])
    truth = np.array([labels[record_id] for record_id in rows.index])
    accuracy = skm.accuracy_score(truth, predicted)
    return {"ErrorRate": 1 - accuracy, "Accuracy": accuracy, "rows": len(truth)}


def test_labels_after_the_batch_are_scored_published_once_and_reported(reread, stack, unlabeled_batch):
    key, frame = unlabeled_batch
    assert stack.statistic("ErrorRate") is None  # nothing to measure at upload
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))

    result = join(stack, labels)

    truth = expected(stack, frame, labels)
    assert result["batches"][0]["newly_labeled"] == 600
    for metric in ("ErrorRate", "Accuracy"):
        point = stack.statistic(metric)
        assert point["SampleCount"] == 600
        assert point["Average"] == pytest.approx(truth[metric], abs=1e-9)
    report = stack.report(key)
    assert report["labeled_rows"] == 600 and report["label_coverage"] == 1.0
    assert report["metrics"]["ErrorRate"] == pytest.approx(truth["ErrorRate"], abs=1e-9)
    assert report["labels"]["awaiting_rows"] == 0 and report["labels"]["arrivals"][0]["new"] == 600
    predictions = stack.predictions(key)
    assert predictions["actual"].notna().all() and predictions["labeled_at"].notna().all()
    assert stack.statistic("LabelsArrived")["Sum"] == 600
    assert stack.statistic("LabelDelaySeconds")["SampleCount"] == 600

    # The same labels again (a redelivered stream batch, an actuals file loaded twice)
    again = join(stack, labels)
    assert again["batches"] == []
    assert stack.statistic("ErrorRate")["SampleCount"] == 600
    assert stack.statistic("LabelsArrived")["Sum"] == 600


def test_a_non_additive_quality_metric_is_published_per_batch_when_its_labels_come_late(
    stack, unlabeled_batch, monkeypatch
):
    # QualityAlarm on F1: without the join's datapoint, late labels never reach the alarm.
    monkeypatch.setenv("QUALITY_METRIC", "F1")
    key, frame = unlabeled_batch
    model = joblib.load(stack.model_dir / "model.joblib")
    first = dict(zip(frame["record_id"][:400], frame["churned"][:400].astype(int), strict=True))
    rest = dict(zip(frame["record_id"][400:], frame["churned"][400:].astype(int), strict=True))
    handler = load_handler("label_join")

    join(stack, first, handler)
    join(stack, rest, handler)

    # One value per join of the batch: its F1 over the rows labeled by then (scikit-learn)
    f1 = []
    for labeled in (first, {**first, **rest}):
        rows = frame.set_index("record_id").loc[list(labeled)]
        f1.append(skm.f1_score([labeled[i] for i in rows.index], model.predict(rows[FEATURES]), pos_label=1))
    point = stack.statistic("F1", ("SampleCount", "Average", "Minimum", "Maximum"))
    assert point["SampleCount"] == 2
    assert point["Average"] == pytest.approx(sum(f1) / 2, abs=1e-9)
    assert (point["Minimum"], point["Maximum"]) == pytest.approx((min(f1), max(f1)), abs=1e-9)
    assert stack.report(key)["metrics"]["F1"] == pytest.approx(f1[1], abs=1e-9)
    # and the row-additive ones as before, each label once
    assert stack.statistic("ErrorRate")["SampleCount"] == 600


def test_a_row_additive_quality_metric_publishes_no_batch_level_value_late(stack, unlabeled_batch):
    _, frame = unlabeled_batch
    join(stack, dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True)))
    assert stack.statistic("ErrorRate")["SampleCount"] == 600
    assert stack.statistic("F1") is None


def test_labels_in_three_instalments_average_to_scikit_learn_on_the_rows_labeled_so_far(
    reread, stack, unlabeled_batch
):
    key, frame = unlabeled_batch
    all_labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    ids = list(all_labels)
    handler = load_handler("label_join")
    so_far: dict[str, int] = {}
    for part in (ids[:150], ids[150:400], ids[400:]):
        instalment = {record_id: all_labels[record_id] for record_id in part}
        so_far.update(instalment)
        join(stack, instalment, handler)
        truth = expected(stack, frame, so_far)
        for metric in ("ErrorRate", "Accuracy"):
            point = stack.statistic(metric)
            assert point["SampleCount"] == len(so_far), metric
            assert point["Average"] == pytest.approx(truth[metric], abs=1e-9), (metric, len(so_far))
        assert stack.report(key)["labeled_rows"] == len(so_far)
    assert stack.statistic("LabelsArrived")["Sum"] == 600


def test_a_corrected_label_replaces_the_old_one(reread, stack, unlabeled_batch):
    key, frame = unlabeled_batch
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    first = dict(list(labels.items())[:300])
    join(stack, first)
    # One label corrected, alone: the report moves at once; CloudWatch cannot take a
    # datapoint of no new rows, so the correction waits for the batch's next labels.
    corrected_id = next(iter(first))
    corrected = {**first, corrected_id: 1 - first[corrected_id]}
    join(stack, {corrected_id: corrected[corrected_id]})
    assert stack.report(key)["metrics"]["ErrorRate"] == pytest.approx(
        expected(stack, frame, corrected)["ErrorRate"], abs=1e-9
    )
    assert stack.statistic("ErrorRate")["Average"] == pytest.approx(
        expected(stack, frame, first)["ErrorRate"], abs=1e-9
    )
    # The rest of the labels: CloudWatch's average is over every row with its latest label
    rest = dict(list(labels.items())[300:])
    join(stack, rest)
    final = {**corrected, **rest}
    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 600
    assert point["Average"] == pytest.approx(expected(stack, frame, final)["ErrorRate"], abs=1e-9)


def test_labels_present_at_upload_and_the_rest_later_are_each_counted_once(reread, stack):
    frame = churn_frame(400, seed=62, id_prefix="half")
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    early = dict(list(labels.items())[:200])
    stack.put_actuals(early)
    key = "incoming/late/half.csv"
    stack.put(key, frame.drop(columns=["churned"]).to_csv(index=False))
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    assert stack.statistic("ErrorRate")["SampleCount"] == 200

    # The stream also carries the early labels again (the table's whole history)
    join(stack, labels)

    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 400
    assert point["Average"] == pytest.approx(expected(stack, frame, labels)["ErrorRate"], abs=1e-9)
    assert stack.report(key)["labeled_rows"] == 400


def test_labels_for_rows_no_batch_scored_change_nothing(stack, unlabeled_batch):
    result = join(stack, {"nobody-1": 1, "nobody-2": 0})
    assert result == {"labels": 2, "logged": 0, "batches": [], "dynamodb_requests": 1}
    assert stack.statistic("ErrorRate") is None
    assert stack.statistic("LabelsWithoutPrediction")["Sum"] == 2  # counted, not dropped unseen


def test_late_labels_put_the_estimate_beside_the_realized_error_and_find_concept_drift(
    stack, monkeypatch, sample_churn_model_dir
):
    # Given the sample model (calibrated) and its batch 6, whose input-target relation
    # changed (samplefiles/README.md), scored before any of its labels existed
    import pandas as pd

    samples = Path(__file__).resolve().parents[2] / "samplefiles" / "classification"
    monkeypatch.setenv("MODEL_DIR", str(sample_churn_model_dir))
    key = "incoming/late/batch-06.csv"
    stack.put(key, (samples / "batches" / "batch-06.csv").read_bytes())
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    assert stack.report(key)["estimated_performance"]["versus_realized"] is None

    # When its labels arrive
    actuals = pd.read_csv(samples / "actuals.csv", dtype={"record_id": str})
    ids = set(stack.predictions(key)["record_id"])
    labels = {row.record_id: int(row.churned) for row in actuals.itertuples() if row.record_id in ids}
    join(stack, labels)

    # Then the report sets the estimate beside the realized error on those rows, and says
    # the relation changed
    estimated = stack.report(key)["estimated_performance"]
    versus = estimated["versus_realized"]
    assert versus["labeled_rows"] == len(labels)
    assert versus["metrics"]["ErrorRate"]["realized"] == pytest.approx(
        stack.report(key)["metrics"]["ErrorRate"], abs=1e-12
    )
    assert [finding["finding"] for finding in estimated["findings"]] == ["concept_drift"]


def test_the_dashboards_event_time_series_holds_each_batchs_error_at_its_event_time(stack):
    # Given two batches four hours apart by event time, each scored without labels
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    frames = {}
    for hours, prefix in ((5, "early"), (1, "later")):
        frame = churn_frame(300, seed=70 + hours, id_prefix=prefix)
        key = f"incoming/late/{prefix}.csv"
        stamp = now - timedelta(hours=hours)
        stack.put(
            key,
            frame.drop(columns=["churned"]).to_csv(index=False),
            Metadata={"batch-time": stamp.isoformat()},
        )
        load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
        frames[stamp] = frame
    # When all their labels come at once
    labels = {
        record_id: int(churned)
        for frame in frames.values()
        for record_id, churned in zip(frame["record_id"], frame["churned"], strict=True)
    }
    join(stack, labels)
    # Then the by-event-time series holds each batch's error in its own hour, and the
    # alarms' series holds both together at the labels' arrival
    for stamp, frame in frames.items():
        points = stack.cloudwatch.get_metric_statistics(
            Namespace="ModelWatch",
            MetricName="ErrorRate",
            Dimensions=[
                {"Name": "ModelName", "Value": "churn-test"},
                {"Name": "Clock", "Value": "EventTime"},
            ],
            StartTime=stamp - timedelta(minutes=30),
            EndTime=stamp + timedelta(minutes=30),
            Period=3600,
            Statistics=["SampleCount", "Average"],
        )["Datapoints"]
        mine = {record_id: labels[record_id] for record_id in frame["record_id"]}
        assert [point["SampleCount"] for point in points] == [300]
        assert points[0]["Average"] == pytest.approx(expected(stack, frame, mine)["ErrorRate"], abs=1e-9)
    assert stack.statistic("ErrorRate")["SampleCount"] == 600


def test_labels_of_a_batch_gone_from_the_ledger_are_counted_not_dropped(stack, unlabeled_batch):
    # Given the batch's ledger item expired (DynamoDB TTL), its rows still in the prediction log
    for item in stack.dynamodb.scan(TableName=stack.ledger_table)["Items"]:
        stack.dynamodb.delete_item(TableName=stack.ledger_table, Key={"id": item["id"]})
    _, frame = unlabeled_batch
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))

    result = join(stack, labels)

    assert result["batches"] == []
    assert stack.statistic("ErrorRate") is None
    assert stack.statistic("LabelsWithoutPrediction")["Sum"] == 600


def test_a_large_batch_join_reads_only_the_labels_that_arrived(stack, unlabeled_batch, monkeypatch):
    """DynamoDB requests: BatchGetItem takes at most 100 keys (the AWS limit), so 50 labels
    joined into the 600-row batch cost one log lookup and one actuals read when only the
    arrived labels are read, and one log lookup and six actuals reads when all are."""
    key, frame = unlabeled_batch
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    first, second = dict(list(labels.items())[:50]), dict(list(labels.items())[50:100])
    assert join(stack, first)["dynamodb_requests"] == 1 + 6  # 600 rows: read whole
    monkeypatch.setattr(label_join_module, "FULL_RECHECK_ROWS", 599)
    assert join(stack, second)["dynamodb_requests"] == 1 + 1
    so_far = {**first, **second}
    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 100
    assert point["Average"] == pytest.approx(expected(stack, frame, so_far)["ErrorRate"], abs=1e-9)
    assert stack.report(key)["labeled_rows"] == 100
    assert stack.predictions(key)["actual"].notna().sum() == 100


@pytest.mark.parametrize("between", ["its read and its write", "its write and its ledger update"])
def test_two_joins_of_one_batch_at_once_count_every_label_once(
    reread, stack, unlabeled_batch, monkeypatch, between
):
    """Joins of one batch can run at once (labels of its rows on two stream shards). Join B
    runs whole inside join A, at the two points where it could undo A's work or A its: the
    ledger's revision sends A back to read again, and the predictions file A reads then is
    the version the ledger names, B's, not the newest (A's own, written on stale labels)."""
    key, frame = unlabeled_batch
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    mine, theirs = dict(list(labels.items())[:300]), dict(list(labels.items())[300:])
    stack.put_actuals(labels)
    a, b = (LabelJoin.from_config(JoinConfig.from_env()) for _ in range(2))
    hooked = "read_predictions" if between == "its read and its write" else "write_predictions"
    original = getattr(a.store, hooked)
    runs: list[int] = []

    def then_b_joins(*args: Any) -> Any:
        result = original(*args)
        if not runs:
            runs.append(len(b.join(list(theirs)).batches))
        return result

    monkeypatch.setattr(a.store, hooked, then_b_joins)
    a.join(list(mine))

    assert runs == [1]
    truth = expected(stack, frame, labels)
    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 600
    assert point["Average"] == pytest.approx(truth["ErrorRate"], abs=1e-9)
    report = stack.report(key)
    assert report["labeled_rows"] == 600
    assert report["metrics"]["ErrorRate"] == pytest.approx(truth["ErrorRate"], abs=1e-9)
    predictions = stack.predictions(key)
    assert predictions["actual"].notna().all()


@pytest.mark.parametrize("written", ["before a later chunk is read", "just after its own chunk is read"])
def test_a_label_written_while_its_batch_is_scored_is_joined_once_the_batch_is_published(stack, written):
    """The batch is scored 100 rows a chunk. While it is scored, labels for 90 of its rows
    are written, and their stream records reach the label join at once, in another thread
    as a concurrent invocation would: it finds the rows logged, waits for the batch to be
    published, and joins them. Written before the third chunk is read, the labels are of
    rows of the first (logged after the last chunk, as before, they were never joined);
    written just after the third chunk's actuals were read, of that chunk's rows, with the
    join's log lookup done before the monitor goes on (so its rows must be logged before
    its actuals are read)."""
    frame = churn_frame(400, seed=63, id_prefix="race")
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    key = "incoming/late/race.csv"
    stack.put(key, frame.drop(columns=["churned"]).to_csv(index=False))
    head = stack.s3.head_object(Bucket=BUCKET, Key=key)
    monitor = BatchMonitor.from_config(MonitorConfig.from_env())
    monitor.chunk_rows = 100
    joiner = LabelJoin.from_config(JoinConfig.from_env())
    polls: list[float] = []
    joiner.sleep = lambda seconds: polls.append(seconds) or time.sleep(0.02)
    looked_up = threading.Event()
    lookup = joiner.log.batches_of

    def batches_of(*args: Any, **kwargs: Any) -> Any:
        try:
            return lookup(*args, **kwargs)
        finally:
            looked_up.set()

    joiner.log.batches_of = batches_of  # type: ignore[method-assign]
    read_actuals, chunks_read = monitor.read_actuals, []
    outcome: dict[str, Any] = {}

    def join_in_another_invocation(racing: dict[str, int]) -> None:
        try:
            outcome["result"] = joiner.join(list(racing), wait_seconds=120)
        except Exception as failure:  # noqa: BLE001 - reported by the assertion below
            outcome["failure"] = failure

    def race(racing: dict[str, int]) -> None:
        outcome["racing"] = racing
        stack.put_actuals(racing)
        outcome["thread"] = threading.Thread(target=join_in_another_invocation, args=(racing,))
        outcome["thread"].start()
        assert looked_up.wait(60)

    def labels_come_while_scoring(ids: list[str], stats: Any) -> Any:
        chunks_read.append(len(ids))
        if len(chunks_read) == 3 and written == "before a later chunk is read":
            race({record_id: labels[record_id] for record_id in list(labels)[:90]})
        found = read_actuals(ids, stats)
        if len(chunks_read) == 3 and written == "just after its own chunk is read":
            race({record_id: labels[record_id] for record_id in ids[:90]})
        return found

    monitor.read_actuals = labels_come_while_scoring
    report = monitor.process(BatchObject(BUCKET, key, head["VersionId"], head["ETag"]))
    outcome["thread"].join(timeout=120)

    assert report.status == "ok" and report.scored is not None and report.scored.labeled_rows == 0
    assert len(chunks_read) > 3
    assert "failure" not in outcome, outcome.get("failure")
    result = outcome["result"]
    assert polls, "the join found the batch published already: nothing raced"
    assert result.logged == 90 and [batch.newly_labeled for batch in result.batches] == [90]
    truth = expected(stack, frame, outcome["racing"])
    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 90
    assert point["Average"] == pytest.approx(truth["ErrorRate"], abs=1e-9)
    assert stack.statistic("LabelsWithoutPrediction") is None
    assert stack.report(key)["labeled_rows"] == 90


def test_labels_of_a_batch_whose_scoring_failed_are_not_waited_for_and_its_rerun_reads_them(
    stack, unlabeled_batch
):
    """A batch whose ids are logged but whose attempt failed (marked in the ledger by the
    monitor) or outlived any invocation: the join neither waits nor fails (which would
    block the stream), and counts its labels as not joined; the run that scores the batch
    again (Lambda's retry here) reads every row's actuals, these labels included."""
    from modelwatch.ledger import STALE_CLAIM_SECONDS, BatchLedger, Claim

    key, frame = unlabeled_batch
    item = stack.dynamodb.scan(TableName=stack.ledger_table)["Items"][0]
    claim = Claim(item["id"]["S"], item["version_id"]["S"])
    labels = dict(list(zip(frame["record_id"], frame["churned"].astype(int), strict=True))[:40])
    stack.put_actuals(labels)
    joiner = LabelJoin.from_config(JoinConfig.from_env())
    joiner.sleep = lambda seconds: pytest.fail("the join waited")
    # Unpublished (as if it never finished), then its attempt failed
    stack.dynamodb.update_item(
        TableName=stack.ledger_table, Key={"id": {"S": claim.item_id}}, UpdateExpression="REMOVE published_at"
    )
    BatchLedger(stack.dynamodb, stack.ledger_table).mark_failed(claim)
    result = joiner.join(list(labels), wait_seconds=600)
    assert result.logged == 40 and result.batches == []
    # Claimed again by a retry (which clears the mark), and that retry outlived any invocation
    stack.dynamodb.update_item(
        TableName=stack.ledger_table,
        Key={"id": {"S": claim.item_id}},
        UpdateExpression="SET claimed_at = :then REMOVE failed_at",
        ExpressionAttributeValues={":then": {"N": str(int(time.time()) - STALE_CLAIM_SECONDS - 5)}},
    )
    assert joiner.join(list(labels), wait_seconds=600).batches == []
    assert stack.statistic("LabelsWithoutPrediction")["Sum"] == 80  # counted, not dropped unseen
    assert stack.statistic("ErrorRate") is None

    # The batch scored again: its run reads the labels at upload
    result = load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    assert result["batches"][0]["status"] == "ok"
    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 40
    assert point["Average"] == pytest.approx(expected(stack, frame, labels)["ErrorRate"], abs=1e-9)


def test_a_publish_failure_after_another_join_advanced_the_batch_loses_no_label_injected_fault(
    reread, stack, unlabeled_batch, monkeypatch
):
    """Join A advances the batch; join B (another shard) joins on top and publishes only its
    own part; then A's PutMetricData fails (a fault injected into A's client: CloudWatch
    cannot be made to fail otherwise). A takes its part back out of the newer totals, so
    when its labels come again (the stream retries them) every label counts once."""
    from botocore.exceptions import ClientError

    key, frame = unlabeled_batch
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    mine, theirs = dict(list(labels.items())[:300]), dict(list(labels.items())[300:])
    stack.put_actuals(mine)
    a, b = (LabelJoin.from_config(JoinConfig.from_env()) for _ in range(2))
    a.cloudwatch = boto3.client("cloudwatch")  # A's own client, so only A's calls fail
    failed: list[str] = []

    def b_joins_then_a_fails(**_: Any) -> None:
        if not failed:
            stack.put_actuals(theirs)
            b.join(list(theirs))
            failed.append("PutMetricData")
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "PutMetricData")

    a.cloudwatch.meta.events.register("before-call.cloudwatch.PutMetricData", b_joins_then_a_fails)
    with pytest.raises(ClientError):
        a.join(list(mine))
    assert failed == ["PutMetricData"]
    assert stack.statistic("ErrorRate")["SampleCount"] == 300  # B's part only

    a.join(list(mine))  # the stream's retry

    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 600
    assert point["Average"] == pytest.approx(expected(stack, frame, labels)["ErrorRate"], abs=1e-9)
    # And each label announced once: A's, in B's newer file, are new to no later join, so
    # the ledger keeps their count for the retry to announce
    assert stack.statistic("LabelsArrived")["Sum"] == 600
    assert stack.statistic("LabelsJoined")["Sum"] == 600


def test_a_pinned_predictions_version_that_is_gone_is_read_newest_with_every_rows_label(
    stack, unlabeled_batch, monkeypatch
):
    """The bucket's lifecycle expires noncurrent versions: if the version the ledger pins is
    gone, the join reads the newest file and every row's label again (the table is the
    truth), even for a batch large enough to read only the arrived ones."""
    monkeypatch.setattr(label_join_module, "FULL_RECHECK_ROWS", 0)
    key, frame = unlabeled_batch
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    first, second = dict(list(labels.items())[:200]), dict(list(labels.items())[200:260])
    join(stack, first)
    item = stack.dynamodb.scan(TableName=stack.ledger_table)["Items"][0]
    pinned = item["predictions_version"]["S"]
    predictions_key = stack.report(key)["outputs"]["predictions"].removeprefix(f"s3://{BUCKET}/")
    stack.s3.put_object(Bucket=BUCKET, Key=predictions_key, Body=b"")  # a newer, unpinned version
    stack.s3.delete_object(Bucket=BUCKET, Key=predictions_key, VersionId=pinned)
    stack.s3.delete_object(
        Bucket=BUCKET,
        Key=predictions_key,
        VersionId=stack.s3.head_object(Bucket=BUCKET, Key=predictions_key)["VersionId"],
    )
    # Only the monitor's original file is left: no label of the first 200 in it
    stack.put_actuals(second)

    result = join(stack, second)

    assert result["dynamodb_requests"] == 1 + 6  # the log lookup, then all 600 rows' labels
    both = {**first, **second}
    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 260
    assert point["Average"] == pytest.approx(expected(stack, frame, both)["ErrorRate"], abs=1e-9)
    assert stack.report(key)["labeled_rows"] == 260
    # The older file lacked the first 200 labels, which were counted already: only the 60
    # that arrived are new
    assert result["batches"][0]["newly_labeled"] == 60
    assert stack.statistic("LabelsArrived")["Sum"] == 260


def test_a_join_between_the_monitors_publish_mark_and_its_failed_publish_is_not_counted_twice_injected_fault(
    stack, monkeypatch
):
    """The monitor marks the batch published; a label join, waiting for it, sees the mark,
    and joins 10 new labels; then the monitor's PutMetricData fails (injected: CloudWatch
    cannot be made to fail otherwise). Taking the mark back would let Lambda's retry read
    those 10 labels at upload and count them again: the mark stays, and the monitor's own
    datapoints are lost instead (the ledger's documented at-most-once window)."""
    from botocore.exceptions import ClientError

    from modelwatch.aws import client

    frame = churn_frame(200, seed=64, id_prefix="mark")
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    at_upload, later = dict(list(labels.items())[:40]), dict(list(labels.items())[40:50])
    stack.put_actuals(at_upload)
    key = "incoming/late/mark.csv"
    stack.put(key, frame.drop(columns=["churned"]).to_csv(index=False))
    handler = load_handler("batch_monitor")
    calls: list[str] = []
    joined: list[int] = []

    def a_join_then_the_monitors_call_fails(**_: Any) -> None:
        if calls:
            return  # the join's own PutMetricData (the same cached client), and the retry's
        calls.append("monitor")
        stack.put_actuals(later)
        joined.append(len(LabelJoin.from_config(JoinConfig.from_env()).join(list(later)).batches))
        raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "PutMetricData")

    cloudwatch = client("cloudwatch")
    cloudwatch.meta.events.register(
        "before-call.cloudwatch.PutMetricData", a_join_then_the_monitors_call_fails
    )
    try:
        with pytest.raises(ClientError):
            handler.lambda_handler(s3_event(key), LambdaContext())
    finally:
        cloudwatch.meta.events.unregister(
            "before-call.cloudwatch.PutMetricData", a_join_then_the_monitors_call_fails
        )
    assert joined == [1]
    # Lambda's retry
    assert load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())

    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 10  # the join's 10, once; not 10 + the retry's 50
    assert point["Average"] == pytest.approx(expected(stack, frame, later)["ErrorRate"], abs=1e-9)


def test_a_join_with_too_little_time_left_stops_before_a_batch_and_its_retry_counts_once(
    stack, unlabeled_batch
):
    """Under MIN_SECONDS_PER_BATCH left (a long wait, a slow batch before it), the join stops
    before the next batch rather than be cut off after advancing its totals (a timeout runs
    no clean-up); nothing is published, and the stream's retry counts every label once."""
    from modelwatch.errors import BatchNotSettled

    key, frame = unlabeled_batch
    labels = dict(zip(frame["record_id"], frame["churned"].astype(int), strict=True))
    stack.put_actuals(labels)
    joiner = LabelJoin.from_config(JoinConfig.from_env())
    with pytest.raises(BatchNotSettled, match="1 batches left to join and 30 s left"):
        joiner.join(list(labels), time_left=lambda: 30.0)
    assert stack.statistic("ErrorRate") is None
    assert stack.report(key)["labeled_rows"] == 0

    joiner.join(list(labels), time_left=lambda: 600.0)

    point = stack.statistic("ErrorRate")
    assert point["SampleCount"] == 600
    assert point["Average"] == pytest.approx(expected(stack, frame, labels)["ErrorRate"], abs=1e-9)
