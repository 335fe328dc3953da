"""The actuals loader function against moto: unknown labels, bounded and streamed files."""

from __future__ import annotations

import gzip
import io
import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import pandas as pd
import pytest

from modelwatch.actuals import iter_actuals_file
from modelwatch.actuals_loading import load_actuals_file
from modelwatch.errors import ActualsFileRejected, BatchRejected
from modelwatch.labels import LabelNormaliser
from tests.integration.conftest import LambdaContext, load_handler, s3_event
from tests.parquet_writer import parquet_bytes

pytestmark = pytest.mark.integration

KEY = "actuals/2026/11/26/answers.csv"


@pytest.fixture
def yes_no_model(stack, tmp_path, monkeypatch):
    """A yes/no classifier: the loader reads only metadata.json."""
    metadata = {
        "name": "answers",
        "version": "1",
        "task": "classification",
        "model_file": "model.skops",
        "id_column": "record_id",
        "target": "answer",
        "features": [{"name": "x", "type": "numeric"}],
        "classes": ["no", "yes"],
        "positive_label": "yes",
    }
    (tmp_path / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("MODEL_NAME", "answers")
    return stack


def run_loader(key: str = KEY) -> dict:
    result = load_handler("actuals_loader").lambda_handler(
        s3_event(key, "actuals-loader-s3-put"), LambdaContext()
    )
    return result["files"][0]


def unknown_labels_sum(stack) -> float | None:
    now = datetime.now(UTC)
    points = stack.cloudwatch.get_metric_statistics(
        Namespace="ModelWatch",
        MetricName="UnknownLabels",
        Dimensions=[{"Name": "ModelName", "Value": "answers"}],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=7200,
        Statistics=["Sum"],
    )["Datapoints"]
    return points[0]["Sum"] if points else None


def test_labels_differing_by_case_from_the_classes_are_known_and_publish_zero(yes_no_model):
    yes_no_model.put(KEY, "record_id,answer\nr-1,Yes\nr-2,No\nr-3, yes \n")

    result = run_loader()

    assert (result["written"], result["unknown_labels"]) == (3, 0)
    assert unknown_labels_sum(yes_no_model) == 0.0  # a clean load is a datapoint: the alarm recovers


def test_unknown_labels_are_counted_named_and_published(yes_no_model, caplog):
    yes_no_model.put(KEY, "record_id,answer\nr-1,maybe\nr-2,yes\nr-3,maybe\nr-4,unsure\n")

    result = run_loader()

    assert result["status"] == "ok" and result["written"] == 4  # written all the same: the table keeps them
    assert result["unknown_labels"] == 3
    assert result["unknown_label_examples"] == {"maybe": 2, "unsure": 1}
    assert unknown_labels_sum(yes_no_model) == 3.0
    assert "'maybe': 2" in caplog.text


def test_a_file_whose_labels_are_all_blank_is_rejected_not_loaded_as_ok(yes_no_model):
    # An export that lost its label column's values: "ok, 0 written" would leave the batches
    # unlabeled without a word; rejected, the function's Errors alarm and the DLQ say so.
    yes_no_model.put(KEY, "record_id,answer\nr-1,\nr-2,NA\nr-3,\n")

    with pytest.raises(ActualsFileRejected, match=r"has 3 rows but none with both a 'record_id' and"):
        run_loader()
    assert boto3.client("dynamodb").scan(TableName=yes_no_model.actuals_table)["Count"] == 0


def test_rows_without_a_label_are_counted_beside_the_loaded_ones(yes_no_model, caplog):
    yes_no_model.put(KEY, "record_id,answer\nr-1,yes\nr-2,\n,no\nr-4,no\n")

    result = run_loader()

    assert (result["status"], result["written"], result["rows_without_label"]) == ("ok", 2, 2)
    assert "2 of the 4 rows" in caplog.text


def test_ambiguous_case_stays_unknown(yes_no_model, tmp_path):
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    metadata.update(classes=["Yes", "yes", "no"], positive_label=None)
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    yes_no_model.put(KEY, "record_id,answer\nr-1,YES\nr-2,yes\n")

    assert run_loader()["unknown_label_examples"] == {"YES": 1}


def test_only_a_few_distinct_unknown_labels_are_named_but_all_are_counted(yes_no_model):
    yes_no_model.put(KEY, "record_id,answer\n" + "".join(f"r-{i},label-{i}\n" for i in range(40)))

    result = run_loader()

    assert result["unknown_labels"] == 40 and len(result["unknown_label_examples"]) == 5


def test_a_file_over_max_actuals_megabytes_is_rejected_before_anything_is_written(yes_no_model, monkeypatch):
    monkeypatch.setenv("MAX_ACTUALS_MEGABYTES", "1")
    yes_no_model.put(KEY, "record_id,answer\n" + "r-000000,yes\n" * 90_000)  # 1.2 MB

    with pytest.raises(ActualsFileRejected, match=r"1,048,576 bytes \(MaxActualsMegabytes\)"):
        run_loader()
    assert yes_no_model.dynamodb.scan(TableName=yes_no_model.actuals_table, Select="COUNT")["Count"] == 0


def test_a_gzip_file_is_stopped_while_inflating_past_the_limit(yes_no_model, monkeypatch):
    monkeypatch.setenv("MAX_ACTUALS_MEGABYTES", "1")
    body = b"record_id,answer\n" + b"".join(b"r-%07d,yes\n" % i for i in range(200_000))  # 2.8 MB
    compressed = gzip.compress(body)
    assert len(compressed) < 1024 * 1024
    yes_no_model.put(KEY + ".gz", compressed)

    with pytest.raises(ActualsFileRejected, match="expands to more than 1,048,576 bytes"):
        run_loader(KEY + ".gz")


def test_a_gzip_file_within_the_limit_loads(yes_no_model):
    yes_no_model.put(KEY + ".gz", gzip.compress(b"record_id,answer\nr-1,yes\nr-2,no\n"))

    assert run_loader(KEY + ".gz")["written"] == 2


class ReadCounter(io.BytesIO):
    """A real byte stream that remembers how far it has been read."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.furthest = self.tell()
        return data


def test_a_file_is_read_a_chunk_at_a_time_not_whole():
    body = b"record_id,actual\n" + b"".join(b"r-%07d,1\n" % i for i in range(200_000))  # 2.4 MB
    stream = ReadCounter(body)

    chunks = iter_actuals_file(stream, "a.csv", "record_id", "actual", chunk_rows=1000)
    first = next(chunks)

    assert len(first.records) == 1000
    assert stream.furthest < len(body) / 4


def test_duplicate_ids_last_wins_and_each_request_writes_a_key_once(stack):
    # moto, as DynamoDB, rejects a BatchWriteItem with two writes to one key.
    rows = [(f"d-{i % 30}", str(i % 2)) for i in range(100)]  # each id 3-4 times, across chunks
    body = ("record_id,actual\n" + "".join(f"{i},{a}\n" for i, a in rows)).encode()

    summary = load_actuals_file(
        io.BytesIO(body),
        "dups.csv",
        dynamodb=stack.dynamodb,
        table=stack.actuals_table,
        id_column="record_id",
        target="actual",
        labels=LabelNormaliser([0, 1]),
        chunk_rows=40,
    )

    # Chunks of 40, 40 and 20 rows hold 30, 30 and 20 distinct ids: ceil(n/25) requests each.
    assert summary.rows == 100 and summary.written == 80
    assert summary.stats.requests == 2 + 2 + 1
    table = boto3.resource("dynamodb").Table(stack.actuals_table)
    last = dict(rows)
    for record_id in ("d-0", "d-9", "d-29"):
        assert table.get_item(Key={"record_id": record_id})["Item"]["actual"] == Decimal(last[record_id])


def test_a_problem_late_in_a_file_says_what_was_already_loaded(stack):
    body = b"record_id,actual\n" + b"".join(b"r-%d,1\n" % i for i in range(50)) + b"r-x,1,extra\n"

    with pytest.raises(BatchRejected, match=r"line 52 has 3 fields.*50 actuals of the rows before"):
        load_actuals_file(
            io.BytesIO(body),
            "late.csv",
            dynamodb=stack.dynamodb,
            table=stack.actuals_table,
            id_column="record_id",
            target="actual",
            labels=None,
            chunk_rows=10,
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "has no header row"),
        (b"record_id,actual\n", "has a header but no data rows"),
        (b"id,id,actual\nr,1,1\n", "duplicate column names ['id']"),
        (b"record_id,Actual\nr,1\n", "its columns are ['record_id', 'Actual'] (did you mean 'Actual'?)"),
        (b"record_id,actual\nr-1,1\nr-2,\xff\n", r"byte b'\xff' at offset 27 (line 3)"),
        (b'record_id,actual\nr-1,"1\n', "quoted field is never closed"),
    ],
    ids=["empty", "header-only", "duplicate-column", "missing-column", "not-utf8", "open-quote"],
)
def test_unreadable_files_are_rejected_with_what_and_where(body, message):
    with pytest.raises(BatchRejected) as rejection:
        list(iter_actuals_file(io.BytesIO(body), "bad.csv", "record_id", "actual"))
    assert message in rejection.value.reason


def test_requests_are_ceil_rows_over_25_per_chunk(stack):
    body = ("record_id,actual\n" + "".join(f"n-{i},{i % 2}\n" for i in range(260))).encode()

    summary = load_actuals_file(
        io.BytesIO(body),
        "n.csv",
        dynamodb=stack.dynamodb,
        table=stack.actuals_table,
        id_column="record_id",
        target="actual",
        labels=None,
        chunk_rows=100,
    )

    assert summary.written == 260
    assert summary.stats.requests == 2 * math.ceil(100 / 25) + math.ceil(60 / 25)


def test_a_parquet_actuals_file_loads_the_same_items_as_its_csv(yes_no_model):
    # Given the same 100 actuals as CSV and as Parquet (integer-free ids, text labels, a timestamp)
    ids = [f"p-{i}" for i in range(100)]
    labels = ["yes" if i % 3 else "no" for i in range(100)]
    observed = [datetime(2026, 11, 26, 10, 0, tzinfo=UTC) + timedelta(minutes=i) for i in range(100)]
    csv_body = "record_id,answer,observed_at\n" + "".join(
        f"{i},{label},{when.isoformat()}\n" for i, label, when in zip(ids, labels, observed, strict=True)
    )
    frame = pd.DataFrame({"record_id": ids, "answer": labels, "observed_at": observed})
    dynamo = boto3.resource("dynamodb").Table(yes_no_model.actuals_table)

    yes_no_model.put("actuals/a.csv", csv_body.encode())
    assert run_loader("actuals/a.csv")["written"] == 100
    from_csv = {item["record_id"]: item for item in dynamo.scan()["Items"]}
    for item in from_csv.values():
        dynamo.delete_item(Key={"record_id": item["record_id"]})

    yes_no_model.put("actuals/a.parquet", parquet_bytes(frame))
    result = run_loader("actuals/a.parquet")
    from_parquet = {item["record_id"]: item for item in dynamo.scan()["Items"]}

    # Then the items are identical
    assert (result["rows"], result["written"], result["unknown_labels"]) == (100, 100, 0)
    assert from_parquet == from_csv


def test_integer_ids_and_numeric_labels_in_parquet_read_as_the_csv_would():
    body = parquet_bytes(
        select="SELECT * FROM (VALUES (1, 1.0::DOUBLE), (2, 0.0), (NULL, 1.0), (3, 1.0)) "
        "AS t(record_id, actual)",
        row_group_size=2048,
    )
    chunks = list(iter_actuals_file(io.BytesIO(body), "a.parquet", "record_id", "actual"))
    records = [record for chunk in chunks for record in chunk.records]
    assert records == [("1", "1.0", None), ("2", "0.0", None), ("3", "1.0", None)]
    assert sum(chunk.rows for chunk in chunks) == 4


def test_a_parquet_actuals_file_is_written_a_row_group_at_a_time():
    body = parquet_bytes(
        select="SELECT 'r-' || i AS record_id, i % 2 AS actual FROM range(5000) t(i)", row_group_size=2048
    )
    chunks = list(iter_actuals_file(io.BytesIO(body), "a.parquet", "record_id", "actual"))
    assert [chunk.rows for chunk in chunks] == [2048, 2048, 904]
    assert chunks[2].records[-1] == ("r-4999", "1", None)


_GOOD_PARQUET = parquet_bytes(select="SELECT 'a' AS record_id, 1 AS actual")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_GOOD_PARQUET[: len(_GOOD_PARQUET) - 10], "is truncated"),
        (b"record_id,actual\nr,1\n", "is not a Parquet file"),
        (
            parquet_bytes(select="SELECT 'a' AS record_id, [1] AS actual"),
            "has a nested LIST column 'actual' (position 2)",
        ),
        (
            parquet_bytes(select="SELECT 1.5::DOUBLE AS record_id, 1 AS actual"),
            "column 'record_id' (position 1) of Parquet type DOUBLE; expected a string or integer column",
        ),
        (
            parquet_bytes(select="SELECT 'a' AS id, 1 AS actual"),
            "its columns are ['id', 'actual']",
        ),
    ],
    ids=["truncated", "not-parquet", "nested", "wrong-type", "missing-column"],
)
def test_unreadable_parquet_actuals_are_rejected_with_what_and_where(body, message):
    with pytest.raises(BatchRejected) as rejection:
        list(iter_actuals_file(io.BytesIO(body), "bad.parquet", "record_id", "actual"))
    assert message in rejection.value.reason
    assert "bad.parquet" in rejection.value.reason


def test_a_parquet_actuals_file_over_the_limit_is_refused_while_it_is_read():
    body = parquet_bytes(select="SELECT 'r-' || i AS record_id, 1 AS actual FROM range(5000) t(i)")
    stream = ReadCounter(body)
    with pytest.raises(BatchRejected, match="over the actuals file size limit"):
        list(iter_actuals_file(stream, "big.parquet", "record_id", "actual", max_bytes=1000))
    assert stream.furthest <= 1001
