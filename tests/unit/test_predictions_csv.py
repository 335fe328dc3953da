"""predictions.csv.gz's text: the batch monitor's own writer gives pandas' to_csv bytes."""

import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelwatch.errors import BatchRejected
from modelwatch.monitor import PredictionsFile, csv_text


def _tables() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    n = 3000
    floats = np.concatenate([rng.random(n // 2), rng.normal(0, 1e20, n // 4), rng.normal(0, 1e-7, n // 4)])
    floats[::17] = np.nan
    floats[1:6] = [np.inf, -np.inf, -0.0, 1e16, 1e-5]
    return {
        "scored rows": pd.DataFrame(
            {
                "record_id": [f"r{i}" for i in range(n)],
                "prediction": rng.integers(0, 3, n),
                "probability": floats,
                "actual": pd.Series([None if i % 3 else i % 2 for i in range(n)], dtype=object),
                "labeled actual": pd.Series([None if i % 11 == 0 else i % 2 for i in range(n)], dtype=object),
                "channel": pd.Series([None if i % 5 == 0 else f"c{i % 4}" for i in range(n)], dtype="str"),
                "flag": rng.random(n) > 0.5,
            }
        ),
        "fields that need quoting": pd.DataFrame(
            {
                "record_id": [
                    f"r,{i}"
                    if i % 7 == 0
                    else f'q"{i}'
                    if i % 11 == 0
                    else f"r\n{i}"
                    if i % 13 == 0
                    else f"r{i}"
                    for i in range(n)
                ],
                "probability": floats,
            }
        ),
        "one column with an empty field": pd.DataFrame({"record_id": ["", "x", None, "y,z"]}),
        "mixed objects": pd.DataFrame(
            {
                "actual": pd.Series([1.5, np.nan, "x", 2, True, np.float64(0.1), np.int64(3)], dtype=object),
                "prediction": range(7),
            }
        ),
        "no rows": pd.DataFrame(
            {"actual": pd.Series([], dtype=object), "probability": pd.Series([], dtype=float)}
        ),
        "float32, left to pandas": pd.DataFrame(
            {"probability": np.array([0.1, 0.2], dtype=np.float32), "b": [1, 2]}
        ),
    }


@pytest.mark.parametrize("name", list(_tables()))
@pytest.mark.parametrize("header", [True, False])
def test_csv_text_is_byte_for_byte_pandas_to_csv(name, header):
    table = _tables()[name]
    assert csv_text(table, header) == table.to_csv(index=False, header=header)


def test_csv_text_reads_back_as_the_same_numbers():
    table = _tables()["scored rows"]
    read = pd.read_csv(io.StringIO(csv_text(table, True)))
    np.testing.assert_array_equal(read["probability"].to_numpy(), table["probability"].to_numpy())
    np.testing.assert_array_equal(read["prediction"].to_numpy(), table["prediction"].to_numpy())


# Text that makes the csv module quote a field, or could: separators, quotes, line ends,
# spaces, non-ASCII letters and line separators, and the empty string.
_AWKWARD = [
    "",
    " ",
    ",",
    '"',
    "\r",
    "\n",
    "\r\n",
    "a,b",
    'say "hi"',
    " lead",
    "trail ",
    "é",
    "日本",
    "\u2028",
    "x",
]


def _random_column(rng: np.random.Generator, kind: str, n: int) -> pd.Series:
    if kind == "float64":
        values = rng.normal(0, 10.0 ** rng.integers(-320, 300), n)
        values[rng.random(n) < 0.1] = np.nan
        return pd.Series(values)
    if kind == "small ints":
        return pd.Series(rng.integers(-3, 3, n))
    if kind == "wide ints":
        return pd.Series(rng.integers(-(2**62), 2**62, n))
    if kind == "uint8":
        return pd.Series(rng.integers(0, 256, n).astype(np.uint8))
    if kind == "bool":
        return pd.Series(rng.random(n) > 0.5)
    if kind == "nullable ints":
        return pd.Series(
            pd.array([None if v % 4 == 0 else int(v) for v in rng.integers(0, 50, n)], dtype="Int64")
        )
    if kind == "nullable bools":
        return pd.Series(
            pd.array([None if v == 2 else bool(v) for v in rng.integers(0, 3, n)], dtype="boolean")
        )
    words = ["".join(rng.choice(_AWKWARD, rng.integers(0, 3))) for _ in range(n)]
    if kind == "text":
        return pd.Series([None if rng.random() < 0.1 else word for word in words], dtype="str")
    if kind == "text objects":
        return pd.Series([None if rng.random() < 0.1 else word for word in words], dtype=object)
    if kind == "category":
        return pd.Series(pd.Categorical([None if rng.random() < 0.1 else word for word in words]))
    if kind == "int objects":
        # a classifier's actuals with integer classes: Python and numpy integers, some missing,
        # and integers too wide for int64
        ints: list[Any] = [None, np.nan, 0, 1, -7, np.int64(3), np.uint8(200), 2**70, np.uint64(2**64 - 1)]
        wide = rng.random() < 0.3
        return pd.Series([ints[i] for i in rng.integers(0, len(ints) if wide else 7, n)], dtype=object)
    # objects of every type the prediction table's actual column (or a passthrough) holds
    choices: list[Any] = [None, np.nan, 1, 0, -7, 1.5, 1e-05, True, False, "yes", "", "a,b", np.float64(0.1)]
    return pd.Series([choices[i] for i in rng.integers(0, len(choices), n)], dtype=object)


_KINDS = [
    "float64",
    "small ints",
    "wide ints",
    "uint8",
    "bool",
    "nullable ints",
    "nullable bools",
    "text",
    "text objects",
    "category",
    "int objects",
    "objects",
]


@pytest.mark.parametrize("seed", range(40))
def test_csv_text_of_random_tables_is_pandas_to_csv(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    kinds = rng.choice(_KINDS, int(rng.integers(1, 7)))
    table = pd.DataFrame(
        {f"{kind} {position}": _random_column(rng, kind, n) for position, kind in enumerate(kinds)}
    )
    for header in (True, False):
        assert csv_text(table, header) == table.to_csv(index=False, header=header), list(kinds)


def test_every_float64_reads_back_as_itself():
    """Bit patterns drawn at random (subnormals, huge and tiny exponents, NaNs with
    payloads), and the values whose repr changes notation: the text is pandas' and reads
    back (Python's float, pandas' parser) as the same float64."""
    rng = np.random.default_rng(11)
    values = rng.integers(0, 2**64, 200_000, dtype=np.uint64).view(np.float64).copy()
    edges = [
        0.0,
        -0.0,
        1e-05,
        9.999999999999999e-05,
        0.0001,
        1e15,
        1e16,
        9999999999999998.0,
        5e-324,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        np.inf,
        -np.inf,
        np.nan,
    ]
    values[: len(edges)] = edges
    table = pd.DataFrame({"probability": values, "prediction": np.arange(len(values))})
    text = csv_text(table, True)
    assert text == table.to_csv(index=False)
    fields = [line.split(",")[0] for line in text.splitlines()[1:]]
    finite = ~np.isnan(values)
    assert [fields[i] for i in np.flatnonzero(~finite)] == [""] * int((~finite).sum())
    back = np.array([float(field) for field, keep in zip(fields, finite, strict=True) if keep])
    assert back.view(np.uint64).tolist() == values[finite].view(np.uint64).tolist()
    read = pd.read_csv(io.StringIO(text))["probability"].to_numpy()
    assert read[finite].view(np.uint64).tolist() == values[finite].view(np.uint64).tolist()


def test_only_the_csv_modules_own_characters_are_quoted():
    """Every character of the Basic Multilingual Plane inside a field: each is written as
    the csv module writes it (the writer quotes only fields that may need it)."""
    characters = [chr(code) for code in range(1, 0x10000) if not 0xD800 <= code < 0xE000]
    table = pd.DataFrame({"record_id": [f"a{c}b" for c in characters], "probability": 0.5})
    assert csv_text(table, True) == table.to_csv(index=False)


def test_predictions_file_holds_the_chunks_as_pandas_writes_them(tmp_path):
    rng = np.random.default_rng(3)
    chunks = [
        pd.DataFrame(
            {
                "record_id": [f"r{start + i}" for i in range(n)],
                "prediction": rng.integers(0, 2, n),
                "probability": rng.random(n),
                "actual": pd.Series([None if i % 3 else 1 for i in range(n)], dtype=object),
                "note": pd.Series([_AWKWARD[i % len(_AWKWARD)] for i in range(n)], dtype="str"),
            }
        )
        for start, n in ((0, 500), (500, 1), (501, 700))
    ]
    path = tmp_path / "predictions.csv.gz"
    with PredictionsFile(path) as predictions:
        for chunk in chunks:
            predictions.write(chunk)
    whole = pd.concat(chunks, ignore_index=True)
    assert gzip.decompress(path.read_bytes()).decode("utf-8") == whole.to_csv(index=False)


def test_predictions_file_widens_for_a_column_first_seen_later(tmp_path):
    first = pd.DataFrame({"record_id": ["a", "b"], "probability": [0.25, np.nan]})
    second = pd.DataFrame({"record_id": ["c"], "probability": [0.1], "channel": ["web,app"]})
    path = tmp_path / "predictions.csv.gz"
    with PredictionsFile(path) as predictions:
        predictions.write(first)
        predictions.write(second)
    expected = pd.concat([first, second], ignore_index=True).to_csv(index=False)
    assert gzip.decompress(path.read_bytes()).decode("utf-8") == expected


def test_an_exception_inside_the_predictions_file_is_the_one_raised(tmp_path):
    table = pd.DataFrame({"record_id": ["a"], "probability": [0.5]})
    with (
        pytest.raises(BatchRejected, match="rejected on purpose"),
        PredictionsFile(tmp_path / "p.csv.gz") as file,
    ):
        file.write(table)
        raise BatchRejected("rejected on purpose", code="test")


def test_a_failed_write_of_the_compressed_file_is_raised():
    """The compressing thread's error (the disk full: /dev/full refuses every write) is
    raised to the monitor, not lost with the thread, even for the last chunk."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    rng = np.random.default_rng(5)
    table = pd.DataFrame({"record_id": [f"r{i}" for i in range(20_000)], "probability": rng.random(20_000)})
    with pytest.raises(OSError), PredictionsFile(Path("/dev/full")) as file:
        file.write(table)
