"""The batch-monitor handler against moto: an object in; report, predictions and datapoints out."""

from __future__ import annotations

import gzip
import json
import math
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus, unquote_plus

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from tests.events import load_event
from tests.integration.conftest import BUCKET, load_handler, s3_event
from tests.lambda_context import LambdaContext
from tests.model_fixtures import CATEGORICAL, NUMERIC, churn_frame
from tests.parquet_writer import parquet_bytes

FEATURES = NUMERIC + CATEGORICAL


def event_key(name: str) -> str:
    return unquote_plus(load_event(name)["Records"][0]["s3"]["object"]["key"])


def labeled_batch(stack, rows: int, seed: int, prefix: str, labeled_share: float = 0.9):
    """Upload-ready CSV text plus the truth; labeled_share of the ids get actuals in DynamoDB."""
    frame = churn_frame(rows, seed=seed, id_prefix=prefix)
    frame["channel"] = "web"
    labeled = frame.sample(frac=labeled_share, random_state=seed)
    stack.put_actuals({row.record_id: int(row.churned) for row in labeled.itertuples()})
    return frame.drop(columns=["churned"]).to_csv(index=False), frame, set(labeled["record_id"])


def expected_error_rate(stack, frame, labeled_ids):
    """scikit-learn on the same rows, with the model loaded independently of the handler."""
    model = joblib.load(stack.model_dir / "model.joblib")
    rows = frame[frame["record_id"].isin(labeled_ids)]
    predictions = model.predict(rows[FEATURES])
    return 1 - skm.accuracy_score(rows["churned"], predictions), len(rows), model, rows


def test_batch_is_scored_matched_measured_and_reported(stack):
    # Given a 1,000-row batch whose actuals are 90% present
    key = event_key("batch-monitor-s3-put")
    body, frame, labeled_ids = labeled_batch(stack, 1000, seed=11, prefix="a")
    stack.put(key, body)
    # When the S3 event arrives
    result = load_handler("batch_monitor").lambda_handler(load_event("batch-monitor-s3-put"), LambdaContext())
    # Then the report, the predictions and the datapoints agree with scikit-learn
    assert result["batches"][0]["status"] == "ok"
    report = stack.report(key)
    error_rate, labeled, model, rows = expected_error_rate(stack, frame, labeled_ids)
    assert (report["rows"], report["rows_scored"], report["labeled_rows"]) == (1000, 1000, labeled)
    assert report["label_coverage"] == pytest.approx(labeled / 1000)
    assert report["metrics"]["ErrorRate"] == pytest.approx(error_rate, abs=1e-9)
    probabilities = model.predict_proba(rows[FEATURES])
    assert report["metrics"]["ROCAUC"] == pytest.approx(
        skm.roc_auc_score(rows["churned"], probabilities[:, 1]), abs=1e-9
    )
    assert report["metrics"]["LogLoss"] == pytest.approx(
        skm.log_loss(rows["churned"], probabilities), abs=1e-9
    )
    assert report["actuals_requests"] == math.ceil(1000 / 100)

    predictions = stack.predictions(key)
    assert list(predictions.columns) == ["record_id", "prediction", "probability", "actual", "channel"]
    assert predictions["actual"].notna().sum() == labeled
    assert np.allclose(predictions["probability"], model.predict_proba(frame[FEATURES])[:, 1])

    error = stack.statistic("ErrorRate")
    assert error["SampleCount"] == labeled
    assert error["Average"] == pytest.approx(error_rate, abs=1e-9)
    coverage = stack.statistic("LabelCoverage")
    assert (coverage["SampleCount"], coverage["Sum"]) == (1000, labeled)
    assert stack.statistic("BatchesProcessed")["Sum"] == 1
    assert stack.statistic("BatchesRejected") is None


def test_url_encoded_key_with_spaces_and_unicode_is_decoded(stack):
    key = event_key("batch-monitor-s3-put-encoded-key")
    assert key == "incoming/region north/lot façade ü+1.csv"
    body, _, _ = labeled_batch(stack, 200, seed=12, prefix="u")
    stack.put(key, body)
    load_handler("batch_monitor").lambda_handler(
        load_event("batch-monitor-s3-put-encoded-key"), LambdaContext()
    )
    assert stack.report(key)["status"] == "ok"
    assert stack.report(key)["batch"]["key"] == key


def test_gzip_batch(stack):
    key = event_key("batch-monitor-s3-put-gzip")
    body, _, _ = labeled_batch(stack, 300, seed=13, prefix="g")
    stack.put(key, gzip.compress(body.encode()))
    load_handler("batch_monitor").lambda_handler(load_event("batch-monitor-s3-put-gzip"), LambdaContext())
    assert stack.report(key)["rows_scored"] == 300


def test_parquet_batch_measures_exactly_as_its_csv(stack):
    # Given the same 5,000 rows uploaded as CSV and as Parquet (three row groups, written by DuckDB)
    key = event_key("batch-monitor-s3-put-parquet")
    body, frame, labeled_ids = labeled_batch(stack, 5000, seed=15, prefix="q")
    stack.put("incoming/same-rows.csv", body)
    stack.put(key, parquet_bytes(frame.drop(columns=["churned"]), row_group_size=2048))
    handler = load_handler("batch_monitor")
    # When both events arrive
    handler.lambda_handler(s3_event("incoming/same-rows.csv"), LambdaContext())
    handler.lambda_handler(load_event("batch-monitor-s3-put-parquet"), LambdaContext())
    # Then every metric agrees with the CSV's and with scikit-learn's, to 1e-9
    from_csv, from_parquet = stack.report("incoming/same-rows.csv"), stack.report(key)
    assert from_parquet["status"] == "ok"
    assert from_parquet["metrics"].keys() == from_csv["metrics"].keys()
    for name, value in from_csv["metrics"].items():
        assert from_parquet["metrics"][name] == pytest.approx(value, abs=1e-9), name
    error_rate, labeled, _, _ = expected_error_rate(stack, frame, labeled_ids)
    assert from_parquet["metrics"]["ErrorRate"] == pytest.approx(error_rate, abs=1e-9)
    assert from_parquet["labeled_rows"] == labeled
    assert from_parquet["drift"] == from_csv["drift"]  # the same typed values, so the same numbers
    pd.testing.assert_frame_equal(stack.predictions(key), stack.predictions("incoming/same-rows.csv"))


def test_parquet_batch_with_a_number_stored_as_text_is_rejected_naming_the_column(stack):
    key = "incoming/typed.parquet"
    frame = churn_frame(50, seed=16, id_prefix="t").drop(columns=["churned"])
    frame["monthly_charges"] = frame["monthly_charges"].astype(str)
    stack.put(key, parquet_bytes(frame))
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert (report["status"], report["code"]) == ("rejected", "wrong_column_type")
    assert "column 'monthly_charges' (position 3) is BYTE_ARRAY (STRING)" in report["reason"]
    assert stack.statistic("BatchesRejected")["Sum"] == 1


def test_report_html_is_written_beside_report_json_as_a_page_a_browser_shows(stack):
    key = event_key("batch-monitor-s3-put-parquet")
    body, frame, _ = labeled_batch(stack, 300, seed=17, prefix="h")
    stack.put(key, parquet_bytes(frame.drop(columns=["churned"])))
    stack.put("incoming/cut.parquet", parquet_bytes(frame.drop(columns=["churned"]))[:-20])
    handler = load_handler("batch_monitor")
    handler.lambda_handler(load_event("batch-monitor-s3-put-parquet"), LambdaContext())
    handler.lambda_handler(s3_event("incoming/cut.parquet"), LambdaContext())
    for batch_key, status in ((key, "ok"), ("incoming/cut.parquet", "rejected")):
        version = stack.report(batch_key)["batch"]["version_id"]
        page_key = f"results/{batch_key.removeprefix('incoming/')}/versions/{version}/report.html"
        page = stack.s3.get_object(Bucket=BUCKET, Key=page_key)
        assert page["ContentType"] == "text/html; charset=utf-8"
        html = page["Body"].read().decode("utf-8")
        assert f"<title>modelwatch {status}: {batch_key}</title>" in html
    assert "is truncated" in html  # the rejected one says why


def test_redelivered_event_publishes_nothing_twice(stack):
    key = event_key("batch-monitor-s3-put")
    body, _, _ = labeled_batch(stack, 500, seed=14, prefix="d")
    stack.put(key, body)
    handler = load_handler("batch_monitor")
    first = handler.lambda_handler(load_event("batch-monitor-s3-put"), LambdaContext())
    second = handler.lambda_handler(load_event("batch-monitor-s3-put"), LambdaContext())
    # A cold start of a second instance sees the same ledger item.
    third = load_handler("batch_monitor").lambda_handler(load_event("batch-monitor-s3-put"), LambdaContext())
    assert first == second == third
    assert stack.statistic("BatchesProcessed")["Sum"] == 1
    assert stack.statistic("RowsScored")["Sum"] == 500


def test_small_and_large_batch_in_one_period_average_by_rows(stack, monkeypatch):
    # Given a 10-row batch at a high error rate and a 10,000-row batch at a low one
    monkeypatch.setenv("MIN_LABELED_ROWS", "1")
    handler = load_handler("batch_monitor")
    errors, counts = [], []
    for rows, seed, prefix in ((10, 15, "s"), (10_000, 16, "l")):
        body, frame, labeled_ids = labeled_batch(stack, rows, seed=seed, prefix=prefix, labeled_share=1.0)
        key = f"incoming/weighted/{prefix}.csv"
        stack.put(key, body)
        handler.lambda_handler(s3_event(key), LambdaContext())
        error_rate, labeled, _, _ = expected_error_rate(stack, frame, labeled_ids)
        errors.append(error_rate * labeled)
        counts.append(labeled)
    # Then CloudWatch's Average is the row-weighted error rate, not the mean of the two batches
    error = stack.statistic("ErrorRate")
    assert error["SampleCount"] == 10_010
    assert error["Average"] == pytest.approx(sum(errors) / sum(counts), abs=1e-9)


def test_quality_metrics_wait_for_enough_labels(stack):
    key = "incoming/few-labels.csv"
    body, _, _ = labeled_batch(stack, 200, seed=17, prefix="f", labeled_share=0.1)  # 20 labeled < 30
    stack.put(key, body)
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["status"] == "ok" and report["labeled_rows"] == 20
    assert report["metrics"] == {} and "MinLabeledRows=30" in report["quality_metrics_withheld"]
    assert stack.statistic("ErrorRate") is None
    assert stack.statistic("LabelCoverage")["Sum"] == 20


def test_labels_match_by_value_whatever_their_text(stack):
    key = "incoming/label-text.csv"
    frame = churn_frame(60, seed=18, id_prefix="t")
    stack.put(key, frame.drop(columns=["churned"]).to_csv(index=False))
    texts = {0: ["0", "0.0", " 0"], 1: ["1", "1.0", "1.00"]}
    import boto3

    table = boto3.resource("dynamodb").Table(stack.actuals_table)
    for index, row in enumerate(frame.itertuples()):
        table.put_item(Item={"record_id": row.record_id, "actual": texts[row.churned][index % 3]})
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["labeled_rows"] == 60
    model = joblib.load(stack.model_dir / "model.joblib")
    expected = 1 - skm.accuracy_score(frame["churned"], model.predict(frame[FEATURES]))
    assert report["metrics"]["ErrorRate"] == pytest.approx(expected, abs=1e-9)


def test_row_level_problems_are_listed_and_the_rest_is_scored(stack):
    key = "incoming/some-bad-rows.csv"
    frame = churn_frame(100, seed=19, id_prefix="b").drop(columns=["churned"])
    text = frame.to_csv(index=False) + "b-00003,12,70,basic\nb-x,twelve,70,basic\n"
    stack.put(key, text)
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["status"] == "ok" and report["rows"] == 102 and report["rows_scored"] == 100
    assert {(item["row"], item["column"], item["value"]) for item in report["invalid_rows"]} == {
        (101, "record_id", "b-00003"),
        (102, "tenure_months", "twelve"),
    }


BAD_BATCHES = [
    ("incoming/bad/empty.csv", b"", "empty"),
    ("incoming/bad/header-only.csv", b"record_id,tenure_months,monthly_charges,plan\n", "no_rows"),
    ("incoming/bad/missing-column.csv", b"record_id,tenure_months,plan\nr1,3,basic\n", "missing_column"),
    (
        "incoming/bad/quote.csv",
        b'record_id,tenure_months,monthly_charges,plan\nr1,3,70,"basic\n',
        "malformed_csv",
    ),
    ("incoming/bad/line.jsonl", b'{"record_id": "r1"}\n{oops}\n', "invalid_json"),
    (
        "incoming/bad/latin1.csv",
        "record_id,tenure_months,monthly_charges,plan\nr1,3,70,café\n".encode("latin-1"),
        "not_utf8",
    ),
    ("incoming/bad/corrupt.csv.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03broken", "corrupt_gzip"),
    ("incoming/bad/batch.xlsx", b"PK\x03\x04", "unsupported_extension"),
    (
        "incoming/bad/too-many-invalid.csv",
        (
            "record_id,tenure_months,monthly_charges,plan\n"
            + "".join(f"r{i},x,70,basic\n" for i in range(40))
        ).encode(),
        "too_many_invalid_rows",
    ),
    (
        "incoming/bad/lost-a-field.csv",
        (
            "record_id,tenure_months,monthly_charges,plan\n" + "".join(f"r{i},3,70\n" for i in range(40))
        ).encode(),
        "too_many_invalid_rows",
    ),
    (
        "incoming/bad/long-unclosed-header.csv",
        b'record_id,tenure_months,monthly_charges,"plan' + b"x" * 140_000 + b"\nr1,3,70,basic\n",
        "malformed_csv",
    ),
    (
        "incoming/bad/deep.jsonl",
        b'{"record_id": "r1", "plan": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n",
        "invalid_json",
    ),
    (
        "incoming/bad/cut-short.parquet",
        parquet_bytes(select="SELECT 'r' || i AS record_id, i AS tenure_months FROM range(100) t(i)")[:-30],
        "truncated_parquet",
    ),
    (
        "incoming/bad/nested.parquet",
        parquet_bytes(
            select="SELECT 'r1' AS record_id, 3 AS tenure_months, 70.0 AS monthly_charges, ['basic'] AS plan"
        ),
        "nested_column",
    ),
]


@pytest.mark.parametrize(("key", "body", "code"), BAD_BATCHES, ids=[case[2] for case in BAD_BATCHES])
def test_bad_batch_gets_one_rejected_report_and_no_quality_metrics(stack, key, body, code):
    stack.put(key, body)
    result = load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    assert result["batches"][0]["status"] == "rejected"
    report = stack.report(key)
    assert report["status"] == "rejected" and report["code"] == code
    assert key in report["reason"]
    assert stack.statistic("BatchesRejected")["Sum"] == 1
    for metric in ("ErrorRate", "RowsScored", "BatchesProcessed", "LabelCoverage"):
        assert stack.statistic(metric) is None, metric
    objects = stack.s3.list_objects_v2(Bucket=stack_bucket(), Prefix="results/")["Contents"]
    # This version's report and its page, the copy as the key's newest report, and the
    # pointer: no predictions
    version = stack.s3.head_object(Bucket=stack_bucket(), Key=key)["VersionId"]
    results = f"results/{key.removeprefix('incoming/')}"
    report_key = f"{results}/versions/{version}/report.json"
    page_key = report_key.removesuffix(".json") + ".html"
    assert sorted(item["Key"] for item in objects) == sorted(
        [report_key, page_key, f"{results}/report.json", "results/latest.json"]
    )
    latest = json.loads(stack.s3.get_object(Bucket=stack_bucket(), Key="results/latest.json")["Body"].read())
    assert latest == {
        "key": key,
        "report": report_key,
        "status": "rejected",
        "event_time": report["event_time"],
        "version_id": report["batch"]["version_id"],
        "uploaded_at": report["uploaded_at"],
        "sequencer": report["batch"]["sequencer"],
    }


def stack_bucket():
    from tests.integration.conftest import BUCKET

    return BUCKET


def test_object_deleted_before_it_was_read(stack):
    key = "incoming/gone.csv"
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["code"] == "object_missing" and "deleted before it could be read" in report["reason"]
    assert stack.statistic("BatchesRejected")["Sum"] == 1


def test_batch_over_the_size_limit_is_rejected_without_reading_it(stack, monkeypatch):
    monkeypatch.setenv("MAX_BATCH_MEGABYTES", "1")
    key = "incoming/huge.csv"
    stack.put(key, "record_id,tenure_months,monthly_charges,plan\n" + "r,1,1,basic\n" * 100_000)
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["code"] == "too_large" and "1,048,576 bytes" in report["reason"]


def test_batch_time_metadata_stamps_the_metrics(stack):
    from datetime import UTC, datetime, timedelta

    key = "incoming/backfill.csv"
    stamp = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    body, _, _ = labeled_batch(stack, 100, seed=20, prefix="m")
    stack.put(key, body, Metadata={"batch-time": stamp.isoformat()})
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["event_time"] == stamp.isoformat() and report["event_time_source"] == "batch-time metadata"
    response = stack.cloudwatch.get_metric_statistics(
        Namespace="ModelWatch",
        MetricName="RowsScored",
        Dimensions=[{"Name": "ModelName", "Value": "churn-test"}],
        StartTime=stamp - timedelta(minutes=1),
        EndTime=stamp + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )
    assert [point["Sum"] for point in response["Datapoints"]] == [100]


def test_the_pipelines_health_signals_are_stamped_when_processed_not_at_a_late_event_time(stack):
    # A batch 4 hours behind: its quality lands at 4 hours ago, where QualityAlarm (5 periods
    # back) still looks; SignalsUnavailableAlarm and ChampionMismatchAlarm look 3 periods back.
    from datetime import UTC, datetime, timedelta

    key = "incoming/late-feed.csv"
    stamp = (datetime.now(UTC) - timedelta(hours=4)).replace(microsecond=0)
    body, _, _ = labeled_batch(stack, 100, seed=21, prefix="h")
    stack.put(key, body, Metadata={"batch-time": stamp.isoformat()})
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    processed = datetime.fromisoformat(stack.report(key)["processed_at"])

    def minutes_with(metric: str) -> list[datetime]:
        points = stack.cloudwatch.get_metric_statistics(
            Namespace="ModelWatch",
            MetricName=metric,
            Dimensions=[{"Name": "ModelName", "Value": "churn-test"}],
            StartTime=stamp - timedelta(hours=1),
            EndTime=processed + timedelta(hours=1),
            Period=60,
            Statistics=["SampleCount"],
        )["Datapoints"]
        return [point["Timestamp"] for point in points]

    def near(times: list[datetime], moment: datetime) -> bool:
        return len(times) == 1 and abs((times[0] - moment).total_seconds()) < 60

    assert near(minutes_with("RowsScored"), stamp)
    # (ChampionMismatch, published only beside a promotion's champion pointer, is in the same set.)
    for metric in ("SignalsUnavailable", "EventTimeLagSeconds"):
        assert near(minutes_with(metric), processed), metric


@pytest.mark.parametrize(
    "stamp",
    ["2018-03-01T00:00:00Z", (datetime.now(UTC) + timedelta(days=1)).isoformat()],
    ids=["2018", "tomorrow"],
)
def test_a_batch_time_cloudwatch_cannot_take_is_reported_but_moves_no_live_metric(stack, stamp):
    # Given a batch stamped in 2018 (or tomorrow): CloudWatch takes datapoints from two
    # weeks old to two hours ahead
    key = "incoming/too-old.csv"
    body, frame, labeled_ids = labeled_batch(stack, 50, seed=21, prefix="o")
    stack.put(key, body, Metadata={"batch-time": stamp})
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    # Then its numbers stay in its report, which says why nothing was published
    assert report["status"] == "ok" and report["live"] is False
    assert report["event_time_source"] == "batch-time metadata"
    assert "outside what CloudWatch accepts" in report["notes"][0]
    assert report["metrics"]["ErrorRate"] == pytest.approx(expected_error_rate(stack, frame, labeled_ids)[0])
    assert report["metrics_published"] == []
    # And no datapoint lands in the current period: BatchesProcessed (StalenessAlarm's
    # metric) and the error stay untouched, so no live alarm moves
    for metric in ("BatchesProcessed", "RowsScored", "ErrorRate", "DriftScore"):
        assert stack.statistic(metric) is None, metric


def test_report_is_valid_json_with_model_identity(stack):
    key = "incoming/identity.csv"
    body, _, _ = labeled_batch(stack, 50, seed=22, prefix="i")
    stack.put(key, body)
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["model"] == {"name": "churn-test", "version": "test"}
    json.dumps(report)


def test_versioned_event_reads_the_version_it_announces(stack):
    key = "incoming/overwritten.csv"
    first, _, _ = labeled_batch(stack, 80, seed=23, prefix="v1")
    version = stack.s3.put_object(Bucket=stack_bucket(), Key=key, Body=first.encode())["VersionId"]
    second, _, _ = labeled_batch(stack, 40, seed=24, prefix="v2")
    stack.put(key, second)  # overwritten before the first event was handled
    event = s3_event(key)
    event["Records"][0]["s3"]["object"]["versionId"] = version
    load_handler("batch_monitor").lambda_handler(event, LambdaContext())
    report = stack.report(key)
    assert report["rows"] == 80 and report["batch"]["version_id"] == version


def test_folder_marker_from_the_console_is_not_a_batch(stack):
    key = "incoming/2026/11/"
    stack.put(key, b"")
    result = load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    assert result["batches"] == [{"key": key, "status": "skipped", "report": None}]
    assert stack.statistic("BatchesRejected") is None


@pytest.mark.parametrize("stamp", ["inf", "1e20", "-1e300", "yesterday"])
def test_unusable_batch_time_falls_back_with_a_note(stack, stamp):
    key = "incoming/odd-time.csv"
    body, _, _ = labeled_batch(stack, 50, seed=25, prefix="t")
    stack.put(key, body, Metadata={"batch-time": stamp})
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["status"] == "ok" and report["event_time_source"] == "upload time"
    assert any(stamp in note for note in report["notes"])


def test_mocked_defect_writes_a_failed_report_raises_and_publishes_nothing(stack, monkeypatch):
    """MOCKED FAULT: a defect in the metrics code cannot be caused with real input."""
    from modelwatch import scoring

    def broken(*args, **kwargs):
        raise RuntimeError("simulated defect")

    monkeypatch.setattr(scoring, "classification_metrics_of_totals", broken)
    key = "incoming/defect.csv"
    body, _, _ = labeled_batch(stack, 100, seed=26, prefix="x")
    stack.put(key, body)
    # A defect is not bad input: the invocation fails, so the error alarm fires and
    # Lambda retries the event, then keeps it in the dead-letter queue.
    with pytest.raises(RuntimeError, match="simulated defect"):
        load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["status"] == "failed" and report["code"] == "internal_error"
    assert "simulated defect" in report["reason"] and "defect in modelwatch" in report["reason"]
    assert report["metrics_published"] == []
    for metric in ("BatchesRejected", "BatchesProcessed", "RowsScored"):
        assert stack.statistic(metric) is None


def test_a_retry_after_a_defect_runs_again_and_its_report_replaces_the_failed_one(stack, monkeypatch):
    """MOCKED FAULT: the defect is patched in for the first attempt only."""
    from modelwatch import scoring

    real = scoring.classification_metrics_of_totals
    calls = {"n": 0}

    def broken_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated defect")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "classification_metrics_of_totals", broken_once)
    key = "incoming/defect-then-ok.csv"
    body, _, _ = labeled_batch(stack, 100, seed=27, prefix="y")
    stack.put(key, body)
    handler = load_handler("batch_monitor")
    with pytest.raises(RuntimeError):
        handler.lambda_handler(s3_event(key), LambdaContext())
    # Lambda's retry of the same event: the idempotency record of the failed attempt
    # must not block it.
    result = handler.lambda_handler(s3_event(key), LambdaContext())
    assert result["batches"][0]["status"] == "ok"
    assert stack.report(key)["status"] == "ok"
    assert stack.statistic("BatchesProcessed")["Sum"] == 1


@pytest.mark.parametrize("character", ["a", "é", "😀"])
def test_a_key_near_s3s_limit_still_gets_its_report(stack, character):
    # Given a batch key of about 1,020 bytes: results/<key>/predictions.csv.gz would
    # pass S3's 1,024-byte limit, and the batch used to end in the DLQ with no report
    filler = character * ((1020 - len("incoming/.csv")) // len(character.encode()))
    key = f"incoming/{filler}.csv"
    other = f"incoming/{filler[:-1]}b.csv"  # same long head, different key
    assert len(key.encode()) <= 1024
    for seed, name in enumerate((key, other)):
        body, _, _ = labeled_batch(
            stack, 50, seed=30 + seed, prefix="k"
        )  # the same bytes would be a duplicate
        stack.put(name, body)
        result = load_handler("batch_monitor").lambda_handler(s3_event(quote_plus(name)), LambdaContext())
        assert result["batches"][0]["status"] == "ok"
    reports = [result_key for result_key in stack.keys("results/") if "/versions/" in result_key]
    reports = [result_key for result_key in reports if result_key.endswith("report.json")]
    assert len(reports) == 2 and all(len(name.encode()) <= 1024 for name in reports)
    assert {json.loads(stack.read(name))["batch"]["key"] for name in reports} == {key, other}


def test_rows_with_a_lost_or_extra_field_are_listed_and_the_rest_is_scored(stack):
    key = "incoming/some-misaligned-rows.csv"
    frame = churn_frame(100, seed=27, id_prefix="m").drop(columns=["churned"])
    text = frame.to_csv(index=False) + "m-x,12,basic\n" + "m-y,12,70,basic,extra\n"
    stack.put(key, text)
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["status"] == "ok" and report["rows"] == 102 and report["rows_scored"] == 100
    assert report["invalid_rows"] == [
        {
            "row": 101,
            "column": None,
            "value": None,
            "reason": "row 101 (line 102) has 3 fields; the header has 4",
        },
        {
            "row": 102,
            "column": None,
            "value": None,
            "reason": "row 102 (line 103) has 5 fields; the header has 4",
        },
    ]


def test_semicolon_separated_batch_is_scored_and_the_report_says_how_it_was_read(stack):
    key = "incoming/semicolons.csv"
    body, frame, labeled_ids = labeled_batch(stack, 200, seed=28, prefix="c")
    stack.put(key, body.replace(",", ";"))
    load_handler("batch_monitor").lambda_handler(s3_event(key), LambdaContext())
    report = stack.report(key)
    assert report["status"] == "ok" and report["rows_scored"] == 200
    error_rate, _, _, _ = expected_error_rate(stack, frame, labeled_ids)
    assert report["metrics"]["ErrorRate"] == pytest.approx(error_rate, abs=1e-9)
    assert any(item["constraint_check_type"] == "delimiter" for item in report["data_quality"])


def test_an_older_version_processed_late_never_takes_back_latest_json(stack):
    # Given two versions of one key, uploaded a second apart (S3 times are to the second)
    key = "incoming/overwritten.csv"
    body, _, _ = labeled_batch(stack, 40, seed=31, prefix="v")
    stack.put(key, body)
    older = stack.s3.head_object(Bucket=BUCKET, Key=key)["VersionId"]
    time.sleep(1.1)
    stack.put(key, body.replace("web", "app"))
    newer = stack.s3.head_object(Bucket=BUCKET, Key=key)["VersionId"]
    handler = load_handler("batch_monitor")

    def deliver(version: str) -> None:
        event = s3_event(key)
        event["Records"][0]["s3"]["object"]["versionId"] = version
        handler.lambda_handler(event, LambdaContext())

    # When the newer version's event is processed first and the older one's after it
    deliver(newer)
    deliver(older)
    # Then the pointer still names the newer version
    pointer = json.loads(stack.read("results/latest.json"))
    assert pointer["version_id"] == newer and pointer["key"] == key
