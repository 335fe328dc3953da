"""Which rows of a replay's actuals files belong to which batch (`modelwatch replay --labels-delay`).

Labels usually arrive after the batch they describe. To replay that, the actuals files are
cut into one actuals file per batch (the rows whose ids the batch holds) plus one of the
rows in no batch; each part is then uploaded under actuals/ when it is due, so it goes
through the actuals loader exactly as a file an upstream system drops would.

Rows are copied as their text (every cell read as a string), so the loader sees the
values the user wrote; ids are compared as the pipeline compares them (the batch's ids
as the validator turns them into DynamoDB keys, the actuals' ids stripped as the loader
strips them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from modelwatch.actuals import ACTUAL_ATTRIBUTE, ID_ATTRIBUTE
from modelwatch.batch_files import read_batch
from modelwatch.errors import BatchRejected
from modelwatch.model_bundle import ModelMetadata
from modelwatch.validation import id_text

# Replayed files are the user's own history on this machine: no Lambda-sized limit applies.
NO_SIZE_LIMIT = 1 << 62


@dataclass(frozen=True)
class LabelFile:
    """Part of an actuals file, ready to upload under actuals/."""

    name: str  # the file name under actuals/
    body: bytes
    rows: int


@dataclass
class LabelSchedule:
    """The parts of the actuals files: those of no batch, and those of each batch by index."""

    unbatched: list[LabelFile]
    by_batch: dict[int, list[LabelFile]]


def batch_ids(path: Path, key: str, metadata: ModelMetadata) -> set[str]:
    """The ids of a batch file as the batch monitor reads them; none for a file it would reject."""
    try:
        frame = read_batch(path.read_bytes(), key, NO_SIZE_LIMIT)
    except BatchRejected:
        return set()  # rejected batches are scored for no row: their labels belong to no batch
    if metadata.id_column not in frame.columns:
        return set()
    return {text for text in frame[metadata.id_column].map(id_text) if text is not None}


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".csv")


def split_actuals(
    actuals_paths: list[Path], batches: list[tuple[Path, str]], metadata: ModelMetadata
) -> LabelSchedule:
    """Cut each actuals file by the batches (path, key) its rows' ids are in.

    A file without the id column the loader looks for (the model's id column with its
    target, else record_id with actual) is not cut: it is loaded whole with the rows of
    no batch, and the loader says what is wrong with it.
    """
    ids = [batch_ids(path, key, metadata) for path, key in batches]
    schedule = LabelSchedule([], {})
    for actuals_path in actuals_paths:
        try:
            frame = pd.read_csv(actuals_path, dtype=str, keep_default_na=False)
        except (ValueError, UnicodeDecodeError):  # pandas' parser errors are ValueErrors
            frame = pd.DataFrame()  # the loader gets it whole and says what is wrong
        id_column = next(
            (
                id_name
                for id_name, target in (
                    (metadata.id_column, metadata.target),
                    (ID_ATTRIBUTE, ACTUAL_ATTRIBUTE),
                )
                if id_name in frame.columns and target in frame.columns
            ),
            None,
        )
        if id_column is None:
            schedule.unbatched.append(LabelFile(actuals_path.name, actuals_path.read_bytes(), len(frame)))
            continue
        row_ids = frame[id_column].str.strip()
        in_some_batch = pd.Series(False, index=frame.index)
        for index, ((batch_path, _), batch_id_set) in enumerate(zip(batches, ids, strict=True)):
            mine = row_ids.isin(batch_id_set)
            in_some_batch |= mine
            if mine.any():
                part = LabelFile(
                    f"{_stem(actuals_path)}--{_stem(batch_path)}.csv",
                    frame[mine].to_csv(index=False).encode("utf-8"),
                    int(mine.sum()),
                )
                schedule.by_batch.setdefault(index, []).append(part)
        if not in_some_batch.all():
            rest = frame[~in_some_batch]
            schedule.unbatched.append(
                LabelFile(
                    f"{_stem(actuals_path)}--no-batch.csv",
                    rest.to_csv(index=False).encode("utf-8"),
                    len(rest),
                )
            )
    return schedule
