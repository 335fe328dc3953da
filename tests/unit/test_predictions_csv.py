"""predictions.csv.gz's text: the batch monitor's own writer gives pandas' to_csv bytes."""

import io

import numpy as np
import pandas as pd
import pytest

from modelwatch.monitor import csv_text


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
