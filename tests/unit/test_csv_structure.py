"""The byte scan of a plain CSV file gives exactly what Python's csv module gives.

batch_files finds a CSV file's header, rows, blank lines and misaligned rows either by
running Python's csv module over every line (_csv_structure_of, the reference) or, for a
plain file, by counting delimiter bytes with numpy (_plain_csv_structure). Here both read
many generated files (blank and whitespace lines, CRLF, no final line break, short and long
rows, a BOM, each delimiter, non-ASCII text, reads cut anywhere) and must agree on every
field; a file that is not plain must be left to csv (None), one case per reason, and
generated files with a byte that is not UTF-8 are rejected naming its line.
"""

from __future__ import annotations

import csv
import io
import random

import pytest

from modelwatch.batch_files import _csv_structure_of, _plain_csv_structure, _text_lines, read_batch
from modelwatch.errors import BatchRejected

# Cell text: ASCII, accented and CJK letters, NUL, and characters str.strip takes for
# whitespace (tab, vertical tab, form feed, file separator, NEL, no-break space, line
# separator, ideographic space). No quote and no carriage return: those make a file not plain.
CELL_CHARACTERS = "ab z09.-_é€漢\x00 \t\x0b\x0c\x1c\x85\u00a0\u2028\u3000;,|"
WHITESPACE_LINES = ["", " ", "   ", "\t", " \x0b\x0c ", "\x1c", "\u00a0", "\u3000 \u2028", "\x85"]


def described(structure):
    header, names, shape = structure
    found = shape.misaligned
    return {
        "header": header,
        "names": names,
        "delimiter": shape.delimiter,
        "rows": shape.rows,
        "widest": shape.widest,
        "row_indexes": found.row_indexes.tolist(),
        "field_counts": found.field_counts.tolist(),
        "lines": found.lines.tolist(),
        "expected_fields": found.expected_fields,
    }


def by_csv(data: bytes):
    return described(_csv_structure_of(_text_lines(data, newline=""), "a.csv"))


def by_bytes(data: bytes, read_bytes: int = 1 << 22):
    found = _plain_csv_structure(io.BytesIO(data), "a.csv", read_bytes)
    return None if found is None else described(found)


def cell(rng: random.Random) -> str:
    return "".join(rng.choice(CELL_CHARACTERS) for _ in range(rng.randint(0, 6)))


def generated_file(seed: int) -> bytes:
    """A plain CSV file: a header of 1 to 6 names joined by one of the four delimiters
    (the sniffer picks it), then rows of every kind, each ended by \\n or \\r\\n."""
    rng = random.Random(seed)
    delimiter = rng.choice(",;\t|")
    width = rng.randint(1, 6)
    names = [f"col{index}" if rng.random() > 0.1 else "" for index in range(width)]
    names[0] = "record_id"
    lines = [rng.choice(WHITESPACE_LINES) for _ in range(rng.choice([0, 0, 1, 3]))]
    lines.append(delimiter.join(names))
    for _ in range(rng.randint(0, 40)):
        kind = rng.random()
        if kind < 0.55:
            fields = width
        elif kind < 0.7:
            fields = rng.randint(1, max(1, width - 1))  # short (or a single field)
        elif kind < 0.8:
            fields = width + rng.randint(1, 3)  # long
        else:
            lines.append(rng.choice(WHITESPACE_LINES))
            continue
        lines.append(delimiter.join(cell(rng) for _ in range(fields)))
    text = "".join(line + rng.choice(["\n", "\n", "\r\n"]) for line in lines)
    if rng.random() < 0.3:
        text = text.removesuffix("\n").removesuffix("\r")  # no line break after the last line
    data = text.encode("utf-8")
    return b"\xef\xbb\xbf" + data if rng.random() < 0.2 else data


@pytest.mark.parametrize("seed", range(400))
def test_the_byte_scan_agrees_with_csv_on_generated_plain_files(seed):
    data = generated_file(seed)
    expected = by_csv(data)
    # Reads of one byte, of a few, and whole: lines cut anywhere, and lines longer than a read.
    for read_bytes in (1, 7, 64, 1 << 22):
        assert by_bytes(data, read_bytes) == expected, read_bytes


@pytest.mark.parametrize("seed", range(0, 400, 8))
def test_a_generated_file_with_a_byte_that_is_not_utf8_is_rejected_naming_its_line(seed):
    # Given a plain file with one byte replaced by one that UTF-8 never uses
    data = bytearray(generated_file(seed))
    offset = random.Random(seed).randrange(len(data))
    data[offset] = 0xFF
    # Then the byte scan leaves it to csv's reading, and the batch is rejected naming the line
    assert by_bytes(bytes(data), 64) is None
    with pytest.raises(BatchRejected) as rejected:
        read_batch(bytes(data), "a.csv", 1 << 20)
    assert rejected.value.code == "not_utf8"
    assert rejected.value.details["line"] == data.count(b"\n", 0, offset) + 1


def test_the_generated_files_hold_every_kind_of_line():
    kinds = {"blank rows": 0, "short rows": 0, "long rows": 0, "crlf": 0, "bom": 0, "no final break": 0}
    delimiters = set()
    for seed in range(400):
        data = generated_file(seed)
        found = by_csv(data)
        delimiters.add(found["delimiter"])
        rows = list(
            csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=found["delimiter"])
        )
        width = found["expected_fields"]
        kinds["short rows"] += sum(1 < len(row) < width for row in rows)
        kinds["long rows"] += sum(len(row) > width for row in rows)
        kinds["blank rows"] += sum(len(row) <= 1 and not "".join(row).strip() for row in rows)
        kinds["crlf"] += b"\r\n" in data
        kinds["bom"] += data.startswith(b"\xef\xbb\xbf")
        kinds["no final break"] += not data.endswith(b"\n")
    assert all(count >= 10 for count in kinds.values()), kinds
    assert delimiters == set(",;\t|")


def test_a_long_line_of_short_fields_is_still_plain():
    names = [f"c{index}" for index in range(70_000)]
    data = (",".join(names) + "\n" + ",".join("1" for _ in names) + "\n1,2\n").encode()
    assert min(map(len, data.splitlines()[:2])) > csv.field_size_limit()  # lines over csv's field limit
    found = by_bytes(data, 4096)
    assert found is not None and found == by_csv(data)
    assert found["row_indexes"] == [1] and found["lines"] == [3]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'record_id,plan\nr1,"basic"\n', id="a quote in a row"),
        pytest.param(b'record_id,"plan"\nr1,basic\n', id="a quote in the header"),
        pytest.param(b'\n"\nrecord_id,plan\nr1,basic\n', id="a quote before the header"),
        pytest.param(b"record_id,plan\nr1,ba\rsic\nr2,plus\n", id="a carriage return inside a row"),
        pytest.param(b"record_id,plan\nr1,basic\r", id="a carriage return ending the file"),
        pytest.param(b"record_id,plan\r\rr1,basic\n", id="a carriage return ending the header"),
        pytest.param(b"record_id,plan\nr1,caf\xe9\n", id="a byte that is not UTF-8"),
        pytest.param(b"record_id,pl\xffan\nr1,basic\n", id="a byte that is not UTF-8 in the header"),
        pytest.param(b"record_id,plan\nr1,\xe2\x82", id="a character cut by the end of the file"),
        pytest.param(b"\x1c\n \n", id="no header, only whitespace"),
        pytest.param(b"record_id,plan\nr1," + b"x" * 140_000 + b"\n", id="a field over csv's limit"),
        pytest.param(b"record_id," + b"x" * 140_000 + b"\nr1,2\n", id="a header field over csv's limit"),
    ],
)
def test_a_file_that_is_not_plain_is_left_to_csv(data):
    for read_bytes in (5, 1 << 22):
        assert by_bytes(data, read_bytes) is None


def test_a_field_at_csv_limit_is_plain_and_one_over_is_not():
    limit = csv.field_size_limit()
    at_limit = b"record_id,plan\nr1," + b"x" * limit + b"\nr2,y\n"
    assert by_bytes(at_limit) == by_csv(at_limit)
    over = at_limit.replace(b"x\n", b"xx\n")
    with pytest.raises(BatchRejected, match="has a field over"):
        by_csv(over)
    assert by_bytes(over) is None


def test_duplicate_names_are_rejected_alike():
    data = b"record_id,plan,plan\nr1,a,b\n"
    with pytest.raises(BatchRejected) as by_scan:
        _plain_csv_structure(io.BytesIO(data), "a.csv")
    with pytest.raises(BatchRejected) as by_reader:
        _csv_structure_of(_text_lines(data, newline=""), "a.csv")
    assert (by_scan.value.code, by_scan.value.reason) == (by_reader.value.code, by_reader.value.reason)


def test_a_plain_file_read_whole_has_csv_rows_and_misaligned_lines():
    # Blank and whitespace lines, CRLF, a short and a long row, no final line break.
    data = b"\xef\xbb\xbf\r\nrecord_id;plan\r\nr1;basic\r\n \r\n\nr2\nr3;a;b\r\n\t\nr4;plus"
    frame = read_batch(data, "a.csv", 1 << 20)
    found = frame.attrs["misaligned_rows"]
    assert frame.attrs["delimiter"] == ";" and len(frame) == 4
    assert found.row_indexes.tolist() == [1, 2] and found.lines.tolist() == [6, 7]
    assert found.field_counts.tolist() == [1, 3]
    assert frame["plan"].tolist()[::3] == ["basic", "plus"]
