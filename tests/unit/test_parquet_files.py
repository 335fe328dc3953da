"""Parquet batch files: read like CSV, rejected like CSV.

The files are written with DuckDB (tests/parquet_writer.py), so the reader (fastparquet) is
checked against a writer that shares none of its code; the CSV reader of the same rows is
the reference for the values.
"""

import io
import tempfile
import tracemalloc
from pathlib import Path

import fastparquet
import numpy as np
import pandas as pd
import pytest

from modelwatch.batch_files import COLUMN_TYPES, read_batch, read_batch_chunks
from modelwatch.errors import BatchRejected
from modelwatch.model_bundle import Feature, ModelMetadata
from modelwatch.validation import check_rows, validate_batch
from tests.parquet_writer import parquet_bytes

LIMIT = 10 * 1024 * 1024
KEY = "incoming/lot 7.parquet"

METADATA = ModelMetadata(
    name="churn-test",
    version="test",
    task="classification",
    model_file="model.joblib",
    id_column="record_id",
    target="churned",
    features=(
        Feature("tenure_months", "numeric", True),
        Feature("monthly_charges", "numeric", True),
        Feature("plan", "categorical", True),
    ),
    classes=(0, 1),
    positive_label=1,
)


# Four columns of the model, typed as a query says.
TYPED = (
    "SELECT {record_id} AS record_id, {tenure_months} AS tenure_months, "
    "{monthly_charges} AS monthly_charges, {plan} AS plan FROM range(2) AS t(i)"
)
GOOD = {
    "record_id": "'r' || i",
    "tenure_months": "CAST(i AS BIGINT)",
    "monthly_charges": "CAST(i AS DOUBLE)",
    "plan": "'basic'",
}


def typed(**columns: str) -> bytes:
    return parquet_bytes(select=TYPED.format(**{**GOOD, **columns}))


def sample_frame(rows: int = 500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    charges = rng.normal(70, 20, rows).round(2)
    charges[::37] = np.nan
    plan = rng.choice(["basic", "plus", "premium"], rows).astype(object)
    plan[::41] = None
    return pd.DataFrame(
        {
            "record_id": [f"r-{index}" for index in range(rows)],
            "tenure_months": rng.integers(1, 72, rows),
            "monthly_charges": charges,
            "plan": plan,
            "channel": "web",
        }
    )


def rejection(body: bytes, key: str = KEY, max_bytes: int = LIMIT) -> BatchRejected:
    """The rejection of the bytes read whole, which the file read in chunks from disk (as
    the batch monitor reads it) must repeat word for word."""
    with pytest.raises(BatchRejected) as rejected:
        validate_batch(read_batch(body, key, max_bytes), METADATA, key, 5.0)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "batch"
        path.write_bytes(body)
        with pytest.raises(BatchRejected) as rejected_in_chunks:
            for chunk in read_batch_chunks(path, key, max_bytes, chunk_rows=1000):
                check_rows(chunk.frame, METADATA, key, chunk.first_row)
    whole, chunked = rejected.value, rejected_in_chunks.value
    assert (chunked.code, chunked.reason, chunked.log_safe) == (whole.code, whole.reason, whole.log_safe)
    assert chunked.details == whole.details
    return whole


def test_a_parquet_batch_validates_to_the_same_rows_as_the_csv_of_the_same_data():
    frame = sample_frame(5000)
    from_csv = validate_batch(
        read_batch(frame.to_csv(index=False).encode(), "a.csv", LIMIT), METADATA, "a", 5
    )
    # Several row groups, so the rows are put back together across them.
    body = parquet_bytes(frame, row_group_size=2048)
    assert len(fastparquet.ParquetFile(io.BytesIO(body)).row_groups) == 3
    from_parquet = validate_batch(read_batch(body, KEY, LIMIT), METADATA, KEY, 5)
    pd.testing.assert_frame_equal(from_parquet.features, from_csv.features)
    assert from_parquet.ids.tolist() == from_csv.ids.tolist()
    assert from_parquet.passthrough["channel"].tolist() == ["web"] * 5000
    assert from_parquet.findings == from_csv.findings  # the same missing values, counted the same


def test_declared_types_are_kept_for_validation():
    frame = read_batch(parquet_bytes(sample_frame(10)), KEY, LIMIT)
    types = frame.attrs[COLUMN_TYPES]
    assert types["tenure_months"].kind == "integer" and types["tenure_months"].type_name == "INT64"
    assert types["plan"].type_name == "BYTE_ARRAY (STRING)"


def test_integer_ids_and_integer_categories_are_read_as_their_text():
    body = parquet_bytes(
        select="SELECT * FROM (VALUES (7, 1.0, 10, 1), (8, 2.0, 20, 2), (NULL, 3.0, 30, 2)) "
        "AS t(record_id, tenure_months, monthly_charges, plan)"
    )
    validated = validate_batch(read_batch(body, KEY, LIMIT), METADATA, KEY, 50)
    assert validated.ids.tolist() == ["7", "8"]
    assert validated.features["plan"].tolist() == ["1", "2"]
    assert validated.invalid_rows == [
        {"row": 3, "column": "record_id", "value": None, "reason": "missing id"}
    ]


@pytest.mark.parametrize(
    ("column", "expression", "type_name"),
    [
        ("tenure_months", "CAST(i AS VARCHAR)", "BYTE_ARRAY (STRING)"),
        ("monthly_charges", "TIMESTAMP '2026-11-26 10:00:00'", "INT64 (TIMESTAMP)"),
        ("monthly_charges", "i > 0", "BOOLEAN"),
        ("plan", "i + 0.5::DOUBLE", "DOUBLE"),
        ("record_id", "'\\x00'::BLOB", "BYTE_ARRAY"),
    ],
)
def test_a_column_of_the_wrong_parquet_type_rejects_the_batch_naming_it(column, expression, type_name):
    problem = rejection(typed(**{column: expression}))
    assert problem.code == "wrong_column_type"
    assert f"column {column!r}" in problem.reason and f"is {type_name}," in problem.reason
    assert KEY in problem.reason and "needs a" in problem.reason
    assert problem.details["columns"] == [column]


@pytest.mark.parametrize(
    ("expression", "shape"),
    [("[i, 2]", "LIST"), ("{'a': i}", "STRUCT"), ("MAP {'k': i}", "MAP")],
)
def test_a_nested_column_rejects_the_batch_naming_the_column_and_its_position(expression, shape):
    body = parquet_bytes(
        select=f"SELECT 'r' || i AS record_id, i AS tenure_months, {expression} AS tags FROM range(2) t(i)"
    )
    problem = rejection(body)
    assert problem.code == "nested_column"
    assert f"nested {shape} column 'tags' (position 3)" in problem.reason
    assert "flatten it" in problem.reason
    assert "tags" not in problem.log_safe


def test_a_truncated_upload_is_rejected_as_truncated():
    body = parquet_bytes(sample_frame(50))
    problem = rejection(body[: len(body) // 2])
    assert problem.code == "truncated_parquet"
    assert "cut short" in problem.reason and KEY in problem.reason


def test_a_file_that_is_not_parquet_says_what_it_expected():
    problem = rejection(b"record_id,tenure_months\nr1,1\n")
    assert problem.code == "not_parquet"
    assert "'PAR1'" in problem.reason and ".csv" in problem.reason


def test_a_damaged_footer_is_rejected_as_corrupt(capsys):
    body = parquet_bytes(sample_frame(50))
    footer_length = int.from_bytes(body[-8:-4], "little")
    damaged = bytearray(body)
    start = len(body) - 8 - footer_length
    damaged[start : start + 40] = b"\xff" * 40
    problem = rejection(bytes(damaged))
    assert problem.code == "corrupt_parquet"
    assert "footer" in problem.reason and "write it again" in problem.reason
    assert capsys.readouterr().out == ""  # fastparquet's own printing is kept out of the log


def test_a_damaged_data_page_names_its_row_group_and_column():
    body = parquet_bytes(sample_frame(6000), row_group_size=2048, compression="snappy")
    # Only the location of the bytes comes from the reader's metadata.
    chunk = fastparquet.ParquetFile(io.BytesIO(body)).row_groups[1].columns[2].meta_data  # monthly_charges
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    damaged = bytearray(body)
    middle = start + chunk.total_compressed_size // 2
    damaged[middle : middle + 16] = bytes(16)
    problem = rejection(bytes(damaged))
    assert problem.code == "corrupt_parquet"
    assert "row group 2 (rows 2,049 to 4,096), column 'monthly_charges'" in problem.reason
    assert problem.details["row"] == 2049


def test_a_file_with_columns_but_no_rows_is_rejected():
    problem = rejection(parquet_bytes(sample_frame(0)))
    assert (problem.code, "no rows" in problem.reason) == ("no_rows", True)


def test_a_run_length_bomb_is_rejected_before_it_is_decoded():
    # Given a few kilobytes that decode to ten million rows
    body = parquet_bytes(select="SELECT 0 AS record_id FROM range(10000000)", compression="zstd")
    assert len(body) < 100_000
    # Then the cell count is refused from the footer alone
    tracemalloc.start()
    problem = rejection(body, max_bytes=1_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert problem.code == "too_large" and "10,000,000 rows" in problem.reason
    assert peak < 5_000_000


def test_the_file_size_limit_applies_to_parquet_too():
    body = parquet_bytes(sample_frame(500))
    problem = rejection(body, max_bytes=len(body) - 1)
    assert problem.code == "too_large" and "MaxBatchMegabytes" in problem.reason


def test_memory_is_a_small_multiple_of_the_decoded_frame():
    frame = sample_frame(50_000)
    body = parquet_bytes(frame, row_group_size=10_240)
    tracemalloc.start()
    read = read_batch(body, KEY, LIMIT)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    frame_bytes = int(read.memory_usage(deep=True).sum())
    assert peak < 3 * frame_bytes


def written(body: bytes, directory: Path) -> Path:
    path = directory / "batch"
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("chunk_rows", [1, 2048, 3000, 5000, 100_000])
def test_chunks_are_whole_row_groups_holding_read_batchs_rows(tmp_path, chunk_rows):
    # Given 7,000 rows in row groups of 2,048 (DuckDB's), an integer column whose only null
    # is in the third row group, timestamps of instants, and text with nulls
    frame = sample_frame(7000)
    frame["visits"] = pd.array([None if index == 5000 else index for index in range(7000)], dtype="Int64")
    frame["seen_at"] = pd.date_range("2026-11-01", periods=7000, freq="min", tz="UTC")
    body = parquet_bytes(frame, row_group_size=2048)
    groups = [group.num_rows for group in fastparquet.ParquetFile(io.BytesIO(body)).row_groups]
    assert groups == [2048, 2048, 2048, 856]
    whole = read_batch(body, KEY, LIMIT)
    # When the file is read from disk in chunks of up to chunk_rows rows
    chunks = list(read_batch_chunks(written(body, tmp_path), KEY, LIMIT, chunk_rows))
    # Then each chunk is whole row groups (one alone when it holds more than chunk_rows),
    # exactly read_batch's rows from its first_row on, with the same dtypes and notes
    expected_sizes = {1: groups, 2048: groups, 3000: [2048, 2048, 2904], 5000: [4096, 2904], 100_000: [7000]}
    assert [len(chunk.frame) for chunk in chunks] == expected_sizes[chunk_rows]
    assert [chunk.first_row for chunk in chunks] == np.cumsum([0, *expected_sizes[chunk_rows][:-1]]).tolist()
    for chunk in chunks:
        rows = whole.iloc[chunk.first_row : chunk.first_row + len(chunk.frame)].reset_index(drop=True)
        pd.testing.assert_frame_equal(chunk.frame, rows)
        assert chunk.frame.attrs[COLUMN_TYPES] == whole.attrs[COLUMN_TYPES]
    # (the integer column is nullable in every chunk, as in the whole file: objects, None for the null)
    assert all(chunk.frame["visits"].dtype == object for chunk in chunks)
    assert whole["visits"].iloc[5000] is None and whole["visits"].iloc[4999] == 4999
    # and against the frame written: the values came through
    assert whole["record_id"].tolist() == frame["record_id"].tolist()
    assert whole["seen_at"].equals(frame["seen_at"].astype(whole["seen_at"].dtype))


def test_memory_of_a_chunked_read_follows_the_chunk_not_the_file(tmp_path):
    frame = sample_frame(100_000)
    body = parquet_bytes(frame, row_group_size=10_240)  # ten row groups
    whole_bytes = int(read_batch(body, KEY, LIMIT).memory_usage(deep=True).sum())
    path = written(body, tmp_path)
    del body
    tracemalloc.start()
    rows = sum(len(chunk.frame) for chunk in read_batch_chunks(path, KEY, LIMIT, chunk_rows=10_240))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rows == 100_000
    # Neither the file's bytes nor the whole frame: about a chunk's frame (a tenth) and its pages.
    assert peak < whole_bytes / 4


@pytest.mark.parametrize(
    "select",
    [
        "SELECT 'secret-1' AS record_id, ['secret'] AS tags",
        "SELECT 'secret-1' AS record_id, 'secret' AS tenure_months",
    ],
)
def test_the_log_safe_text_of_a_parquet_rejection_quotes_no_value(select):
    problem = rejection(parquet_bytes(select=select))
    assert "secret" not in problem.log_safe
