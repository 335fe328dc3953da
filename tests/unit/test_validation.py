"""Validation against the model's metadata: batch-level rejections and row-level rejections."""

import numpy as np
import pandas as pd
import pytest

from modelwatch.batch_files import read_batch
from modelwatch.errors import BatchRejected
from modelwatch.model_bundle import Feature, ModelMetadata
from modelwatch.validation import SeenIds, validate_batch


def metadata(accepts_missing=True):
    return ModelMetadata(
        name="m",
        version="1",
        task="classification",
        model_file="model.joblib",
        id_column="record_id",
        target="churned",
        classes=(0, 1),
        positive_label=1,
        features=(Feature("tenure", "numeric", accepts_missing), Feature("plan", "categorical", True)),
    )


def frame(text):
    return read_batch(text.encode(), "incoming/b.csv", 10**7)


def healthy_rows(n, start=0):
    return "".join(f"r{i},{i % 50},basic\n" for i in range(start, start + n))


def test_missing_feature_column_rejects_the_batch_naming_it():
    with pytest.raises(BatchRejected) as rejected:
        validate_batch(frame("record_id,plan\nr1,basic\n"), metadata(), "incoming/b.csv", 5)
    assert rejected.value.code == "missing_column"
    assert "'tenure'" in rejected.value.reason and "incoming/b.csv" in rejected.value.reason


def test_bad_rows_are_listed_with_row_column_and_value_and_the_rest_is_kept():
    text = "record_id,tenure,plan,channel\n" + healthy_rows(100).replace("\n", ",web\n")
    text += "r200,twelve,basic,web\n"  # non-numeric value in a numeric column
    text += "r5,3,plus,web\n"  # duplicate id (r5 appeared above)
    text += ",3,plus,web\n"  # missing id
    result = validate_batch(frame(text), metadata(), "incoming/b.csv", max_invalid_row_percent=5)
    assert result.rows_read == 103
    assert len(result.features) == 100
    assert result.invalid_row_count == 3
    by_row = {item["row"]: item for item in result.invalid_rows}
    assert by_row[101] == {"row": 101, "column": "tenure", "value": "twelve", "reason": "expected a number"}
    assert by_row[102]["column"] == "record_id" and "duplicate" in by_row[102]["reason"]
    assert by_row[103]["reason"] == "missing id"
    assert result.features["tenure"].dtype == float
    assert list(result.passthrough.columns) == ["channel"]


def test_missing_value_the_model_cannot_take_rejects_the_row():
    text = "record_id,tenure,plan\n" + healthy_rows(50) + "rx,,basic\n"
    result = validate_batch(frame(text), metadata(accepts_missing=False), "incoming/b.csv", 5)
    assert result.invalid_rows == [
        {"row": 51, "column": "tenure", "value": None, "reason": "missing value; this model cannot take one"}
    ]


def test_missing_value_the_model_accepts_is_scored_and_reported_as_a_finding():
    text = "record_id,tenure,plan\n" + healthy_rows(50) + "rx,,basic\n"
    result = validate_batch(frame(text), metadata(accepts_missing=True), "incoming/b.csv", 5)
    assert len(result.features) == 51 and np.isnan(result.features["tenure"].iloc[-1])
    assert result.findings[0]["feature_name"] == "tenure" and result.findings[0]["rows"] == 1


def test_more_invalid_rows_than_the_limit_rejects_the_whole_batch():
    text = "record_id,tenure,plan\n" + healthy_rows(90) + "".join(f"bad{i},oops,basic\n" for i in range(10))
    with pytest.raises(BatchRejected) as rejected:
        validate_batch(frame(text), metadata(), "incoming/b.csv", max_invalid_row_percent=5)
    assert rejected.value.code == "too_many_invalid_rows"
    assert "10 of 100 rows (10.0%)" in rejected.value.reason and "row 91" in rejected.value.reason


def test_exactly_at_the_limit_is_accepted():
    text = "record_id,tenure,plan\n" + healthy_rows(95) + "".join(f"bad{i},oops,basic\n" for i in range(5))
    assert validate_batch(frame(text), metadata(), "incoming/b.csv", 5).invalid_row_count == 5


def test_jsonl_numeric_ids_become_text_and_types_are_coerced():
    batch = pd.DataFrame.from_records(
        [{"record_id": 7, "tenure": "3", "plan": "basic"}, {"record_id": 8.0, "tenure": 4.5, "plan": 1}]
    )
    result = validate_batch(batch, metadata(), "b.jsonl", 5)
    assert result.ids.tolist() == ["7", "8"]
    assert result.features["tenure"].tolist() == [3.0, 4.5]
    assert result.features["plan"].tolist() == ["basic", "1"]


def test_an_id_dynamodb_cannot_store_rejects_only_its_row():
    text = "record_id,tenure,plan\n" + healthy_rows(50) + "x" * 3000 + ",3,basic\n"
    result = validate_batch(frame(text), metadata(), "incoming/b.csv", 5)
    assert len(result.features) == 50
    assert (
        result.invalid_rows[0]["row"] == 51 and "longer than 2048 bytes" in result.invalid_rows[0]["reason"]
    )


def test_jsonl_missing_tokens_mean_missing_as_in_csv():
    batch = pd.DataFrame([{"record_id": "a", "tenure": "NA", "plan": "basic"}] * 3, dtype=object)
    batch["record_id"] = ["a", "b", "c"]
    result = validate_batch(batch, metadata(accepts_missing=True), "b.jsonl", 5)
    assert result.invalid_row_count == 0 and result.findings[0]["rows"] == 3


def test_rows_with_too_few_or_too_many_fields_are_invalid_rows_naming_row_line_and_counts():
    # Given a 3-field header, a short row (a lost field) and a long row (an extra one)
    text = "record_id,tenure,plan\n" + healthy_rows(48) + "rs,7\n" + "rl,7,basic,extra\n" + "re,,\n"
    result = validate_batch(frame(text), metadata(accepts_missing=True), "incoming/b.csv", 5)
    # Then both are invalid rows, reported once each with the counts, and the rest is scored
    assert result.invalid_row_count == 2 and len(result.features) == 49
    assert result.invalid_rows == [
        {
            "row": 49,
            "column": None,
            "value": None,
            "reason": "row 49 (line 50) has 2 fields; the header has 3",
        },
        {
            "row": 50,
            "column": None,
            "value": None,
            "reason": "row 50 (line 51) has 4 fields; the header has 3",
        },
    ]
    assert result.invalid_by_reason == {
        "2 fields where the header has 3": 1,
        "4 fields where the header has 3": 1,
    }
    # and the row with empty fields but the right count is scored with missing values
    assert result.ids.tolist()[-1] == "re"
    assert {(f["feature_name"], f["rows"]) for f in result.findings} == {("tenure", 1), ("plan", 1)}


def test_a_feed_that_lost_a_column_is_rejected_not_imputed():
    text = "record_id,tenure,plan\n" + "".join(f"r{i},{i}\n" for i in range(20))
    with pytest.raises(BatchRejected) as rejected:
        validate_batch(frame(text), metadata(accepts_missing=True), "incoming/b.csv", 5)
    assert rejected.value.code == "too_many_invalid_rows"
    assert "20 of 20 rows" in rejected.value.reason
    assert "row 1 (line 2) has 2 fields; the header has 3" in rejected.value.reason


def test_semicolon_file_is_read_and_the_report_says_so():
    result = validate_batch(frame("record_id;tenure;plan\nr1;3;basic\n"), metadata(), "incoming/b.csv", 5)
    assert result.features["tenure"].tolist() == [3.0]
    assert [f["constraint_check_type"] for f in result.findings] == ["delimiter"]
    assert "';'" in result.findings[0]["description"]


def test_duplicate_column_in_a_very_wide_frame_is_named():
    wide = pd.DataFrame([[1] * 80_001], columns=[f"c{i}" for i in range(80_000)] + ["c5"])
    with pytest.raises(BatchRejected) as rejected:
        validate_batch(wide.assign(record_id="r1", tenure=1, plan="a"), metadata(), "b.jsonl", 5)
    assert rejected.value.code == "duplicate_column" and "['c5']" in rejected.value.reason


SECRET = "jane.doe@example.com"


def test_a_rejected_batch_logs_no_cell_value_and_reports_a_truncated_one():
    long_value = SECRET + "x" * 10_000
    text = "record_id,tenure,plan\n" + "".join(f"bad{i},{long_value},basic\n" for i in range(10))
    with pytest.raises(BatchRejected) as rejected:
        validate_batch(frame(text), metadata(), "incoming/b.csv", max_invalid_row_percent=5)
    rejection = rejected.value
    assert SECRET not in rejection.log_safe
    assert "row 1" in rejection.log_safe and "'tenure'" in rejection.log_safe
    assert "expected a number" in rejection.log_safe and "incoming/b.csv" in rejection.log_safe
    # The report (reason and details) keeps enough of the value to find it, not all of it
    assert SECRET in rejection.reason and len(rejection.reason) < 1000
    listed = rejection.details["invalid_rows"][0]["value"]
    assert listed.startswith(SECRET) and len(listed) <= 120


def test_values_listed_for_invalid_rows_are_truncated():
    text = "record_id,tenure,plan\n" + healthy_rows(50) + "rx," + "y" * 5000 + ",basic\n"
    listed = validate_batch(frame(text), metadata(), "incoming/b.csv", 5).invalid_rows[0]
    assert listed["reason"] == "expected a number" and listed["value"].startswith("yyy")
    assert len(listed["value"]) <= 120


def test_missing_column_of_a_headerless_file_keeps_its_first_row_out_of_the_log():
    text = f"{SECRET},3,basic\nr2,4,plus\n"  # no header: the first row became the column names
    with pytest.raises(BatchRejected) as rejected:
        validate_batch(frame(text), metadata(), "incoming/b.csv", 5)
    assert rejected.value.code == "missing_column"
    assert SECRET in rejected.value.reason and SECRET not in rejected.value.log_safe
    assert "'record_id'" in rejected.value.log_safe and "incoming/b.csv" in rejected.value.log_safe


def test_ids_are_stripped_and_too_long_means_over_2048_utf8_bytes():
    # Given ids padded with whitespace, blank ones, and long ones of 1-, 3- and 4-byte characters
    ids = [" a1 ", "\ta2", "   ", "x" * 2048, "x" * 2049, "€" * 682, "€" * 683, "😀" * 512, "😀" * 513, "a1"]
    text = "record_id,tenure,plan\n" + "".join(f"{record_id},{i},basic\n" for i, record_id in enumerate(ids))
    result = validate_batch(frame(text), metadata(), "incoming/b.csv", 100)
    # Then the kept ids are str.strip's, a blank one is missing, an id is too long when its
    # UTF-8 encoding is, and " a1 " and "a1" are the same id
    stripped = [record_id.strip() for record_id in ids]
    too_long = [len(record_id.encode("utf-8")) > 2048 for record_id in stripped]
    assert too_long == [False, False, False, False, True, False, True, False, True, False]
    kept = [
        record_id
        for position, record_id in enumerate(stripped)
        if record_id and not too_long[position] and record_id not in stripped[:position]
    ]
    assert result.ids.tolist() == kept and result.ids.dtype == object
    reasons = {item["row"]: item["reason"] for item in result.invalid_rows}
    assert reasons == {
        3: "missing id",
        5: "id longer than 2048 bytes",
        7: "id longer than 2048 bytes",
        9: "id longer than 2048 bytes",
        10: "duplicate id (an earlier row has it)",
    }
    assert result.features["plan"].dtype == object and result.features["tenure"].dtype == float


def test_ids_seen_in_earlier_chunks_are_found_as_a_set_finds_them():
    # Given 40 chunks of ids, some repeated within and across chunks, some missing
    rng = np.random.default_rng(7)
    seen_ids = SeenIds()
    reference: set[str] = set()
    for _ in range(40):
        drawn = rng.integers(0, 30_000, size=int(rng.integers(0, 2_000)))
        chunk = pd.Series([None if value % 97 == 0 else f"id-{value}" for value in drawn], dtype=object)
        earlier = seen_ids.add(chunk)
        # Then an id is reported as seen exactly when an earlier chunk had it (a missing id never)
        assert earlier.tolist() == [value is not None and value in reference for value in chunk]
        reference.update(value for value in chunk if value is not None)
    assert len(seen_ids.runs) < 8  # the runs were merged as they grew
