"""Reading batch files: formats, and a clear reason for every unreadable file."""

import gzip
import io
import json
import tracemalloc

import pytest

from modelwatch.batch_files import MISALIGNED_ROWS, detect_format, read_batch
from modelwatch.errors import BatchRejected

LIMIT = 10 * 1024 * 1024
CSV = "record_id,tenure_months,plan\nr1,12,basic\nr2,,plus\n"


def test_csv_cells_are_read_as_text_with_missing_tokens_as_missing():
    frame = read_batch(CSV.encode(), "incoming/a.csv", LIMIT)
    assert list(frame.columns) == ["record_id", "tenure_months", "plan"]
    assert frame["tenure_months"].iloc[0] == "12"
    assert frame["tenure_months"].isna().iloc[1]


def test_utf8_bom_is_tolerated():
    frame = read_batch(b"\xef\xbb\xbf" + CSV.encode(), "incoming/a.csv", LIMIT)
    assert frame.columns[0] == "record_id"


@pytest.mark.parametrize("key", ["incoming/a.csv.gz", "incoming/A.CSV.GZ"])
def test_gzip_csv_is_decompressed(key):
    assert len(read_batch(gzip.compress(CSV.encode()), key, LIMIT)) == 2


def test_jsonl_and_jsonl_gz():
    lines = (
        "\n".join(json.dumps(r) for r in [{"record_id": "r1", "x": 1.5}, {"record_id": 2, "x": None}]) + "\n"
    )
    for key, body in (("b.jsonl", lines.encode()), ("b.jsonl.gz", gzip.compress(lines.encode()))):
        frame = read_batch(body, key, LIMIT)
        assert frame["x"].iloc[0] == 1.5 and len(frame) == 2


@pytest.mark.parametrize(
    ("key", "body", "code", "words"),
    [
        ("a.csv", b"", "empty", "empty (0 bytes)"),
        ("a.csv", b"\n\n", "empty", "no data"),
        ("a.csv", b"record_id,tenure_months,plan\n", "no_rows", "no data rows"),
        ("a.csv", b'record_id,plan\nr1,"basic\nr2,plus\n', "malformed_csv", "closing quote"),
        ("a.jsonl", b'{"record_id": "r1"}\n{"record_id": "r2",\n', "invalid_json", "line 2"),
        ("a.jsonl", b'{"record_id": "r1"}\n[1, 2]\n', "invalid_json", "expected an object"),
        ("a.csv", b"record_id,plan\nr1,caf\xe9\n", "not_utf8", "line 2"),
        ("a.csv.gz", b"\x1f\x8b\x08\x00garbage", "corrupt_gzip", "not a valid gzip"),
        ("a.csv.gz", b"plain text, not gzip", "corrupt_gzip", "not a valid gzip"),
        ("a.xlsx", b"PK", "unsupported_extension", ".csv, .csv.gz, .jsonl, .jsonl.gz, .parquet"),
        # mtime=0: the same test id in every process (pytest-xdist compares the ids its workers collect)
        ("a.csv.gz", gzip.compress(CSV.encode(), mtime=0)[:-12], "corrupt_gzip", "not a valid gzip"),
    ],
)
def test_unreadable_files_are_rejected_with_an_actionable_reason(key, body, code, words):
    with pytest.raises(BatchRejected) as rejected:
        read_batch(body, key, LIMIT)
    assert rejected.value.code == code
    assert words in rejected.value.reason
    assert key in rejected.value.reason


def test_size_limit_applies_to_the_file_and_to_its_decompressed_content():
    big = ("record_id,x\n" + "r,1\n" * 5000).encode()
    with pytest.raises(BatchRejected, match="over the configured batch size limit"):
        read_batch(big, "a.csv", max_bytes=1000)
    compressed = gzip.compress(big)
    assert len(compressed) < 1000
    with pytest.raises(BatchRejected, match="expands to more than"):
        read_batch(compressed, "a.csv.gz", max_bytes=1000)


def test_format_detection():
    assert detect_format("incoming/x.jsonl.gz").kind == "jsonl"
    assert detect_format("incoming/x.csv").compressed is False


def test_jsonl_line_separator_inside_a_string_is_not_a_line_break():
    body = json.dumps({"record_id": "r1", "note": "a\u2028b"}, ensure_ascii=False) + "\r\n"
    body += json.dumps({"record_id": "r2", "note": "c"}) + "\n"
    frame = read_batch(body.encode(), "b.jsonl", LIMIT)
    assert frame["note"].tolist() == ["a\u2028b", "c"]


def test_jsonl_long_integer_ids_survive_a_row_without_one():
    body = '{"record_id": 12345678901234567, "x": 1}\n{"x": 2}\n'
    frame = read_batch(body.encode(), "b.jsonl", LIMIT)
    assert frame["record_id"].iloc[0] == 12345678901234567


def test_duplicate_csv_header_is_rejected_not_renamed():
    with pytest.raises(BatchRejected) as rejected:
        read_batch(b"record_id,plan,plan\nr1,a,b\n", "a.csv", LIMIT)
    assert rejected.value.code == "duplicate_column" and "['plan']" in rejected.value.reason


def test_rows_with_the_wrong_number_of_fields_are_flagged_and_their_values_not_kept():
    # Given a header of 3 fields, a short row, a long row, and a row of empty but present fields
    body = b"record_id,a,b\nr1,1\nr2,1,2,3\nr3,,\nr4,4,5\n"
    frame = read_batch(body, "a.csv", LIMIT)
    misaligned = frame.attrs[MISALIGNED_ROWS]
    # Then the short and long rows are flagged with their line and field count, and no value of
    # theirs survives (a shifted field must not be scored as another column's value)
    assert misaligned.expected_fields == 3
    assert misaligned.row_indexes.tolist() == [0, 1]
    assert misaligned.field_counts.tolist() == [2, 4]
    assert misaligned.lines.tolist() == [2, 3]
    assert frame.iloc[:2].isna().all().all()
    # and the row with empty fields is an ordinary row with missing values
    assert frame.iloc[2].tolist()[0] == "r3" and frame.iloc[2].isna().tolist() == [False, True, True]
    assert frame.iloc[3].tolist() == ["r4", "4", "5"]


def test_line_numbers_of_misaligned_rows_count_quoted_line_breaks():
    body = b'record_id,note\nr1,"two\nlines"\n\nr2\n'
    misaligned = read_batch(body, "a.csv", LIMIT).attrs[MISALIGNED_ROWS]
    assert misaligned.row_indexes.tolist() == [1] and misaligned.lines.tolist() == [5]


def test_a_file_with_every_row_aligned_has_no_misaligned_rows():
    assert read_batch(CSV.encode(), "a.csv", LIMIT).attrs[MISALIGNED_ROWS].row_indexes.size == 0


def _peak_traced_bytes(call):
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_jsonl_memory_is_a_small_multiple_of_the_file_size():
    # 8-byte lines are the worst case: the old reader kept a dict per line (~37x the file).
    line = b'{"a":1}\n'
    body = line * (256 * 1024 // len(line))
    peak = _peak_traced_bytes(lambda: read_batch(body, "b.jsonl", LIMIT))
    assert peak < 6 * len(body), f"peak {peak:,} bytes for a {len(body):,}-byte file"


def test_gzip_bomb_is_rejected_before_it_is_inflated():
    # Given 200 MB of zeros compressed to about 200 KB, and a 1 MB limit
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb") as writer:
        writer.write(b"record_id,x\n")
        for _ in range(200):
            writer.write(b"0" * 1024 * 1024)
    body = compressed.getvalue()
    assert len(body) < 1024 * 1024

    def read():
        with pytest.raises(BatchRejected) as rejected:
            read_batch(body, "bomb.csv.gz", 1024 * 1024)
        assert rejected.value.code == "too_large"
        assert "expands to more than 1,048,576 bytes" in rejected.value.reason

    # Then it is rejected having inflated about one limit's worth, not 200 MB
    assert _peak_traced_bytes(read) < 4 * 1024 * 1024


def test_duplicate_column_in_a_very_wide_header_is_named():
    names = [f"c{index}" for index in range(80_000)] + ["c79998"]
    body = (",".join(names) + "\n" + ",".join("1" for _ in names) + "\n").encode()
    with pytest.raises(BatchRejected) as rejected:
        read_batch(body, "wide.csv", LIMIT)
    assert rejected.value.code == "duplicate_column" and "['c79998']" in rejected.value.reason


def test_unclosed_quote_in_a_header_over_the_csv_field_limit_is_malformed_csv():
    body = b'record_id,"' + b"x" * 140_000 + b"\nr1,2\n"
    with pytest.raises(BatchRejected) as rejected:
        read_batch(body, "a.csv", LIMIT)
    assert rejected.value.code == "malformed_csv"
    assert "line 1" in rejected.value.reason and "quote" in rejected.value.reason


def test_unclosed_quote_names_the_line_where_the_field_opened():
    body = b'record_id,plan\nr1,basic\nr2,"plus\nr3,basic\n'
    with pytest.raises(BatchRejected) as rejected:
        read_batch(body, "a.csv", LIMIT)
    assert rejected.value.code == "malformed_csv" and "line 3" in rejected.value.reason


def test_deeply_nested_json_line_is_invalid_json_naming_the_line():
    body = b'{"record_id": "r1"}\n{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    with pytest.raises(BatchRejected) as rejected:
        read_batch(body, "a.jsonl", LIMIT)
    assert rejected.value.code == "invalid_json"
    assert "line 2" in rejected.value.reason and "nested" in rejected.value.reason


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_semicolon_tab_and_pipe_separated_files_are_read_and_the_delimiter_said(delimiter, name):
    body = delimiter.join(["record_id", "tenure_months", "plan"]) + "\n"
    body += delimiter.join(["r1", "12,5", "basic"]) + "\n"
    frame = read_batch(body.encode(), "a.csv", LIMIT)
    assert list(frame.columns) == ["record_id", "tenure_months", "plan"]
    assert frame.iloc[0].tolist() == ["r1", "12,5", "basic"]
    assert frame.attrs["delimiter"] == delimiter


def test_a_comma_file_whose_column_names_hold_other_delimiters_stays_comma_separated():
    frame = read_batch(b"record_id,notes;free text,a|b\nr1,x,y\n", "a.csv", LIMIT)
    assert list(frame.columns) == ["record_id", "notes;free text", "a|b"]
    assert frame.attrs["delimiter"] == ","


SECRET = "jane.doe@example.com"


@pytest.mark.parametrize(
    ("key", "body", "code"),
    [
        ("a.csv", f"record_id,plan\nr1,{SECRET}\nr2,\xe9\n".encode("latin-1"), "not_utf8"),
        ("a.csv", f'record_id,plan\nr1,"{SECRET}\n'.encode(), "malformed_csv"),
        ("a.jsonl", f'{{"record_id": "{SECRET}"}}\n{{oops {SECRET}}}\n'.encode(), "invalid_json"),
        ("a.csv", f"record_id,{SECRET},{SECRET}\nr1,a,b\n".encode(), "duplicate_column"),
    ],
)
def test_the_log_safe_text_of_a_rejection_carries_no_file_content(key, body, code):
    with pytest.raises(BatchRejected) as rejected:
        read_batch(body, key, LIMIT)
    assert rejected.value.code == code
    assert SECRET not in rejected.value.log_safe
    assert key in rejected.value.log_safe
