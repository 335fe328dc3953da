"""A batch read in chunks reports exactly what the same batch read whole reports.

The batch monitor reads, validates, scores and writes CHUNK_ROWS rows at a time. Here
the same 1,000 rows (with invalid rows, missing values, ids repeated across chunks, a
misaligned CSV row, unlabeled rows and an unknown label) go through the monitor once as
one chunk and once in chunks of 97 rows, as CSV, gzip CSV, JSONL and Parquet (row groups
of several sizes, one of them larger than a chunk), against moto; every field of the two
reports, every datapoint, the predictions file and the prediction log must agree (numbers
to 1e-9), and the quality metrics must be scikit-learn's.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import fastparquet
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from modelwatch.config import MonitorConfig
from modelwatch.monitor import BatchMonitor
from modelwatch.results import BatchObject
from tests.integration.conftest import BUCKET

SAMPLES = Path(__file__).resolve().parents[2] / "samplefiles" / "classification"
ROWS = 1000
SMALL_CHUNK = 97  # 11 chunks of 1,000 rows, the last one short
# Fields that name the object, its version or the clock, not what was measured.
# actuals_requests: BatchGetItem takes 100 ids, so each chunk's last request may be short.
NOT_MEASURED = {
    "batch",
    "processed_at",
    "uploaded_at",
    "event_time",
    "timings_ms",
    "outputs",
    "predictions_version_id",
    "actuals_requests",
}


def batch_rows() -> tuple[pd.DataFrame, dict[str, Any]]:
    """The sample's drifting batch 6 (1,000 rows) and 70% of its actuals, with every kind of
    row that validation and measurement treat apart."""
    frame = pd.read_csv(SAMPLES / "batches" / "batch-06.csv", dtype=str, keep_default_na=False)
    assert len(frame) == ROWS
    frame.loc[[5, 400, 955], "tenure_months"] = "soon"  # not a number: invalid rows in three chunks
    frame.loc[[12, 13, 500, 990], "monthly_charges"] = ""  # accepted missing values
    frame.loc[[150, 720], "record_id"] = frame.loc[[3, 100], "record_id"].to_numpy()  # ids of earlier chunks
    frame.loc[640, "record_id"] = ""  # a missing id
    truth = pd.read_csv(SAMPLES / "actuals.csv", dtype={"record_id": str}).set_index("record_id")["churned"]
    first_rows = frame["record_id"].iloc[: int(ROWS * 0.7)]
    actuals: dict[str, Any] = {
        record_id: int(truth[record_id]) for record_id in first_rows if record_id in truth
    }
    actuals[frame.loc[801, "record_id"]] = "maybe"  # a label the model does not know
    return frame, actuals


def csv_text(frame: pd.DataFrame) -> str:
    lines = frame.to_csv(index=False).splitlines(keepends=True)
    lines[301] = lines[301].rstrip("\n") + ",extra\n"  # data row 301: one field too many
    return "".join(lines)


def jsonl_text(frame: pd.DataFrame) -> str:
    records = []
    for position, record in enumerate(frame.to_dict(orient="records")):
        record = {name: value for name, value in record.items() if value != ""}
        if position < 250:
            record.pop("channel")  # a passthrough column first seen in the third chunk
        records.append(json.dumps(record))
    return "\n".join(records) + "\n"


# Rows per Parquet row group, repeated to 1,000 rows: chunks of 97 rows take two row groups
# of 40, one of 97, one of 35 and the 40 after it, or the 150 alone (more than a chunk).
ROW_GROUP_SIZES = (40, 40, 97, 35, 150)
NUMERIC_COLUMNS = ("tenure_months", "monthly_charges", "data_usage_gb", "days_since_last_login")


def parquet_body(frame: pd.DataFrame) -> bytes:
    """The rows as typed Parquet columns: numbers as doubles ("soon" as infinity, which is no
    number either), support_tickets as integers with a null on an unlabeled row, the rows
    the quality metrics are checked on being the CSV's (fastparquet reads the column back
    as nullable, in every chunk), missing text as null."""
    typed = frame.replace("", None)
    for name in NUMERIC_COLUMNS:
        typed[name] = typed[name].replace("soon", "inf").astype(float)
    typed["support_tickets"] = pd.array(
        [None if index == 850 else int(value) for index, value in enumerate(typed["support_tickets"])],
        dtype="Int64",
    )
    sizes = np.resize(ROW_GROUP_SIZES, ROWS)
    offsets = np.cumsum(np.concatenate(([0], sizes)))
    offsets = offsets[offsets < ROWS].tolist()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "batch.parquet"
        fastparquet.write(str(path), typed, row_group_offsets=offsets, write_index=False)
        return path.read_bytes()


def monitor(chunk_rows: int) -> BatchMonitor:
    built = BatchMonitor.from_config(MonitorConfig.from_env())
    built.chunk_rows = chunk_rows
    # The same bytes are scored under two keys on purpose, to compare the two runs: without
    # this, the second would be a duplicate of the first (ledger.claim_content).
    built.ledger.claim_content = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return built


def logged(stack) -> set[str]:
    """The record ids in the prediction log (the batch's item id and the expiry are the run's)."""
    pages = stack.dynamodb.get_paginator("scan").paginate(TableName=stack.prediction_log_table)
    return {item["record_id"]["S"] for page in pages for item in page["Items"]}


def assert_same(whole: Any, chunked: Any, where: str = "report") -> None:
    """Equal, numbers to 1e-9 (relative or absolute), dicts key by key, lists item by item."""
    if isinstance(whole, dict):
        assert isinstance(chunked, dict) and whole.keys() == chunked.keys(), where
        for name in whole:
            assert_same(whole[name], chunked[name], f"{where}.{name}")
    elif isinstance(whole, list):
        assert isinstance(chunked, list) and len(whole) == len(chunked), where
        for index, (first, second) in enumerate(zip(whole, chunked, strict=True)):
            assert_same(first, second, f"{where}[{index}]")
    elif isinstance(whole, float) and not isinstance(chunked, bool):
        assert chunked == pytest.approx(whole, rel=1e-9, abs=1e-9, nan_ok=True), where
    else:
        assert whole == chunked, where


@pytest.mark.parametrize(
    "suffix, encode",
    [
        (".csv", lambda frame: csv_text(frame).encode()),
        (".csv.gz", lambda frame: gzip.compress(csv_text(frame).encode())),
        (".jsonl", lambda frame: jsonl_text(frame).encode()),
        (".parquet", parquet_body),
    ],
)
def test_chunked_batch_reports_what_the_whole_batch_reports(
    stack, monkeypatch, sample_churn_model_dir, suffix, encode
):
    monkeypatch.setenv("MODEL_DIR", str(sample_churn_model_dir))
    # Given 1,000 rows with invalid, missing, repeated and unlabeled rows, and their actuals
    frame, actuals = batch_rows()
    stack.put_actuals(actuals)
    body = encode(frame)
    if suffix == ".parquet":
        groups = [group.num_rows for group in fastparquet.ParquetFile(io.BytesIO(body)).row_groups]
        assert len(groups) > 11 and max(groups) > SMALL_CHUNK and sum(groups) == ROWS
    reports, predictions, logs = {}, {}, {}
    # When the same bytes are processed as one chunk and as 11 chunks of 97 rows
    for chunk_rows in (10 * ROWS, SMALL_CHUNK):
        key = f"incoming/chunks-{chunk_rows}{suffix}"
        stack.put(key, body)
        head = stack.s3.head_object(Bucket=BUCKET, Key=key)
        report = monitor(chunk_rows).process(BatchObject(BUCKET, key, head["VersionId"], head["ETag"]))
        assert report.status == "ok", report.rejection
        reports[chunk_rows] = report
        predictions[chunk_rows] = stack.predictions(key)
        logs[chunk_rows] = logged(stack)

    # Then the reports agree field by field: metrics, drift, estimate, invalid rows, findings
    whole, chunked = (reports[chunk_rows].to_dict() for chunk_rows in (10 * ROWS, SMALL_CHUNK))
    assert whole["drift"]["features"] and whole["estimated_performance"]["metrics"]
    assert_same(
        {name: value for name, value in whole.items() if name not in NOT_MEASURED},
        {name: value for name, value in chunked.items() if name not in NOT_MEASURED},
    )
    assert whole["timings_ms"].keys() == chunked["timings_ms"].keys()
    assert whole["actuals_requests"] <= chunked["actuals_requests"] <= whole["actuals_requests"] + 11
    # 3 not numbers, 2 repeated ids, 1 missing id (+ 1 misaligned CSV row)
    assert (chunked["rows"], chunked["rows_invalid"]) == (ROWS, 7 if suffix.startswith(".csv") else 6)
    listed = [row["row"] for row in chunked["invalid_rows"]]
    assert listed == sorted(listed) and {6, 151, 401, 641, 721, 956} <= set(listed)
    assert any(f["constraint_check_type"] == "unknown_labels" for f in chunked["data_quality"])
    # ... the published datapoints too (but EventTimeLagSeconds, which is the clock's: the
    # processing time minus the upload time)
    assert_same(
        {name: dataclasses.asdict(value) for name, value in reports[10 * ROWS].published.items()}
        | {"EventTimeLagSeconds": None},
        {name: dataclasses.asdict(value) for name, value in reports[SMALL_CHUNK].published.items()}
        | {"EventTimeLagSeconds": None},
        "published",
    )
    # ... and the predictions file and the prediction log hold the same rows
    pd.testing.assert_frame_equal(predictions[10 * ROWS], predictions[SMALL_CHUNK])
    assert logs[10 * ROWS] == logs[SMALL_CHUNK] == set(predictions[SMALL_CHUNK]["record_id"].astype(str))
    assert len(logs[SMALL_CHUNK]) == chunked["rows_scored"]

    # And the quality metrics are scikit-learn's on the valid labeled rows
    from modelwatch.model_bundle import load_bundle

    bundle = load_bundle(sample_churn_model_dir)
    features_of = bundle.metadata.feature_names
    scored_rows = predictions[SMALL_CHUNK]
    labeled = scored_rows[scored_rows["actual"].notna()]
    truth = labeled["actual"].astype(int).to_numpy()
    first_of_each_id = frame.drop_duplicates(subset="record_id", keep="first").set_index("record_id")
    rows = first_of_each_id.loc[labeled["record_id"], features_of].replace("", np.nan)
    numeric = [feature.name for feature in bundle.metadata.features if feature.type == "numeric"]
    rows = rows.astype(dict.fromkeys(numeric, float))
    probabilities = bundle.estimator.predict_proba(rows)
    metrics = chunked["metrics"]
    assert chunked["labeled_rows"] == len(labeled) > 600
    assert metrics["ErrorRate"] == pytest.approx(
        1 - skm.accuracy_score(truth, probabilities.argmax(axis=1)), abs=1e-9
    )
    assert metrics["ROCAUC"] == pytest.approx(skm.roc_auc_score(truth, probabilities[:, 1]), abs=1e-9)
    assert metrics["LogLoss"] == pytest.approx(skm.log_loss(truth, probabilities), abs=1e-9)


def test_a_batch_whose_kept_values_go_to_disk_reports_what_it_reports_in_memory(
    stack, monkeypatch, sample_churn_model_dir
):
    import modelwatch.sorted_runs as sorted_runs
    import modelwatch.validation as validation

    monkeypatch.setenv("MODEL_DIR", str(sample_churn_model_dir))
    monkeypatch.setattr(tempfile, "tempdir", tempfile.mkdtemp())  # the workspaces, to look in after
    # Given the batch with ids repeated across chunks, read in chunks of 97 rows
    frame, actuals = batch_rows()
    stack.put_actuals(actuals)
    written: list[str] = []  # the names of the files written to disk
    real_file = sorted_runs.SpillDirectory.file

    def recording_file(directory: Any, name: str) -> Path:
        written.append(name)
        return real_file(directory, name)

    reports = {}
    for spilled in (False, True):
        if spilled:
            # ... once with the probabilities and the ids' hashes written to disk every chunk or two
            monkeypatch.setattr(sorted_runs, "SPILL_BUDGET_BYTES", 512)
            monkeypatch.setattr(validation, "IDS_IN_MEMORY", 150)
            monkeypatch.setattr(validation, "BLOOM_BITS", 1 << 12)
            monkeypatch.setattr(validation, "PAGE_HASHES", 8)
            monkeypatch.setattr(sorted_runs.SpillDirectory, "file", recording_file)
        key = f"incoming/spilled-{spilled}.csv"
        stack.put(key, csv_text(frame).encode())
        head = stack.s3.head_object(Bucket=BUCKET, Key=key)
        report = monitor(SMALL_CHUNK).process(BatchObject(BUCKET, key, head["VersionId"], head["ETag"]))
        assert report.status == "ok", report.rejection
        reports[spilled] = report.to_dict()

    assert sum(name.startswith("run-") for name in written) > 10
    assert sum(name.startswith("ids-") for name in written) > 3
    # Then the reports agree field by field (metrics to 1e-9)
    in_memory, on_disk = reports[False], reports[True]
    assert_same(
        {name: value for name, value in in_memory.items() if name not in NOT_MEASURED},
        {name: value for name, value in on_disk.items() if name not in NOT_MEASURED},
    )
    # ... a repeated id is rejected as it was, naming the row and the id (the first row is
    # in a run on disk by then)
    duplicates = [row for row in on_disk["invalid_rows"] if row["reason"].startswith("duplicate id")]
    assert duplicates == [
        {
            "row": row + 1,
            "column": "record_id",
            "value": frame.loc[row, "record_id"],
            "reason": "duplicate id (an earlier row has it)",
        }
        for row in (150, 720)
    ]
    # ... and no file is left behind
    assert list(Path(tempfile.gettempdir()).iterdir()) == []
