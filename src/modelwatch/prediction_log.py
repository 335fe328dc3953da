"""The prediction log: which batch scored each record id, so a label that comes later finds it.

One DynamoDB item per record id (the key labels arrive by): the batch's ledger item, the
batch's event time, the prediction and the positive-class probability. The label join
reads it with BatchGetItem (100 ids a request) and never scans.

Cost per million scored rows, on-demand in us-east-1: writes $1.25 (1M write request
units, items under 1 KB, 40,000 BatchWriteItem requests); storage ~150 bytes a row,
0.15 GB, $0.04 a month, until the TTL (``PredictionLogDays``) removes them; lookups of
their labels $0.06 (eventually consistent, 0.5 read units a row). The alternative, an
index over the predictions files in S3, would be cheaper to write but needs a scan or a
second store to find a record id's batch: the read pattern decides.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from botocore.config import Config

from modelwatch.actuals import ID_ATTRIBUTE, RequestStats, batch_get_items, batch_write_items

BATCH_ATTRIBUTE = "batch"

# The configuration of the client the batch monitor logs through (modelwatch.aws.client
# merges it into its defaults). botocore checks every request's parameters against the API
# model, attribute by attribute: with it a logged row cost ~80 CPU-µs in botocore (80
# CPU-seconds a million rows, more than the rest of the batch), without it ~50. The items
# are built here, in DynamoDB's form, from text and numbers; DynamoDB itself still refuses
# a malformed one (ValidationException).
WRITE_CLIENT_CONFIG = Config(parameter_validation=False)


class PredictionLog:
    def __init__(self, client: Any, table: str, retention_days: int, clock: Any = time.time):
        self.client = client
        self.table = table
        self.retention_days = retention_days
        self.clock = clock

    def record(self, batch_id: str, event_time: str, table: pd.DataFrame, id_column: str) -> int:
        """Log every scored row of ``table`` (a predictions table) as scored by ``batch_id``.
        A record id scored again later (a changed file, a new model) points to the newer batch."""
        expires = {"N": str(int(self.clock()) + self.retention_days * 86_400)}
        batch = {"S": batch_id}
        moment = {"S": event_time}
        # Whole columns at a time: a row's value by position (.iloc) cost 6 µs, 13
        # CPU-seconds for a million rows before any write. The items are built in
        # DynamoDB's attribute-value form (boto3's TypeSerializer took another 10
        # CPU-seconds a million), and the values that repeat (the batch, the event time,
        # the expiry, each predicted class) are one shared attribute value each: boto3
        # only reads them.
        keys = list(map(str, table[id_column].tolist()))
        shared: dict[str, dict[str, str]] = {}
        predictions = [
            shared.get(text) or shared.setdefault(text, {"S": text})
            for text in map(str, table["prediction"].tolist())
        ]
        probabilities = (
            _probability_values(table["probability"].to_numpy(dtype=float, na_value=np.nan))
            if "probability" in table.columns
            else [None] * len(table)
        )
        items: dict[str, dict[str, Any]] = {}
        with _cyclic_gc_paused():
            for key, prediction, probability in zip(keys, predictions, probabilities, strict=True):
                item: dict[str, Any] = {
                    ID_ATTRIBUTE: {"S": key},
                    BATCH_ATTRIBUTE: batch,
                    "event_time": moment,
                    "prediction": prediction,
                    "expiration": expires,
                }
                if probability is not None:  # NaN: no probability attribute
                    item["probability"] = probability
                items[key] = item
        return batch_write_items(self.client, self.table, list(items.values()), threads=8, typed=True)

    def record_file(self, batch_id: str, event_time: str, path: Path, id_column: str, chunk_rows: int) -> int:
        """``record`` for a predictions.csv.gz on disk, read back ``chunk_rows`` rows at a time.

        The batch monitor writes the file while it scores and logs it only once the batch
        is known to be accepted, so a rejected batch leaves no log items. Ids and
        predictions are read as the text they were written as; probabilities as the
        exact float (pandas 3 parses floats round trip; tests/integration/test_chunked_batches.py
        checks the logged probabilities)."""
        written = 0
        reader = pd.read_csv(
            path,
            dtype={id_column: str, "prediction": str},
            keep_default_na=False,
            na_values={"probability": [""]},
            usecols=lambda name: name in (id_column, "prediction", "probability"),
            chunksize=chunk_rows,
        )
        with reader:
            for table in reader:
                written += self.record(batch_id, event_time, table, id_column)
        return written

    def batches_of(self, ids: Iterable[str], stats: RequestStats | None = None) -> dict[str, list[str]]:
        """The logged record ids among ``ids``, grouped by the batch that scored them."""
        found = batch_get_items(self.client, self.table, ids, [BATCH_ATTRIBUTE], stats=stats)
        grouped: dict[str, list[str]] = {}
        for record_id, item in found.items():
            grouped.setdefault(str(item[BATCH_ATTRIBUTE]), []).append(record_id)
        return grouped


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a chunk's items are built: it runs
    every 700 new dicts and walks the ones still alive, which were a third of the time
    spent building them (the items hold no cycles, so nothing is left for it to free)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# repr writes a float in plain decimal notation from 1e-4 up to (not including) 1e16, and
# in scientific notation outside; Decimal's str gives such plain text back unchanged.
_PLAIN_REPR_FROM, _PLAIN_REPR_BELOW = 1e-4, 1e16


def _probability_values(numbers: np.ndarray) -> list[dict[str, str] | None]:
    """Each probability as a DynamoDB number, None where it is NaN.

    The text is the shortest that reads back as the same float, as TypeSerializer wrote
    Decimal(repr(number)). DynamoDB's numbers stop at 1E-130: a smaller probability is
    logged as 0, where the serializer raised and failed the batch (log_loss clips it to its
    epsilon either way). Most probabilities lie where repr is plain decimal text, which is
    already Decimal's text: those take one repr of the whole list (a C loop, where repr,
    Decimal and str per value were 2.5 CPU-seconds a million rows); the others (below
    1e-4, NaN, infinite) go through Decimal one by one.
    """
    # repr of the list: the floats' reprs separated by ", " (which no float's repr holds).
    texts: list[Any] = repr(numbers.tolist())[1:-1].split(", ") if numbers.size else []
    magnitude = np.abs(numbers)
    with np.errstate(invalid="ignore"):
        plain = (magnitude >= _PLAIN_REPR_FROM) & (magnitude < _PLAIN_REPR_BELOW)
    values: list[dict[str, str] | None] = [{"N": text} for text in texts]
    for position in np.flatnonzero(~plain).tolist():
        number = float(numbers[position])
        if math.isnan(number):
            values[position] = None
        else:
            values[position] = {"N": str(Decimal(repr(number))) if abs(number) >= 1e-128 else "0"}
    return values
