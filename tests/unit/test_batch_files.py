"""Reading batch files: formats, and a clear reason for every unreadable file."""

import gzip
import json

import pytest

from modelwatch.batch_files import detect_format, read_batch
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
        ("a.csv", b"record_id,plan\nr1,basic,extra\n", "malformed_csv", "as many fields as the header"),
        ("a.jsonl", b'{"record_id": "r1"}\n{"record_id": "r2",\n', "invalid_json", "line 2"),
        ("a.jsonl", b'{"record_id": "r1"}\n[1, 2]\n', "invalid_json", "expected an object"),
        ("a.csv", b"record_id,plan\nr1,caf\xe9\n", "not_utf8", "line 2"),
        ("a.csv.gz", b"\x1f\x8b\x08\x00garbage", "corrupt_gzip", "not a valid gzip"),
        ("a.csv.gz", b"plain text, not gzip", "corrupt_gzip", "not a valid gzip"),
        ("a.parquet", b"PAR1", "unsupported_extension", ".csv, .csv.gz, .jsonl, .jsonl.gz"),
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
