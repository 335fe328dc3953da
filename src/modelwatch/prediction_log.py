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

import math
import time
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from modelwatch.actuals import ID_ATTRIBUTE, RequestStats, batch_get_items, batch_write_items

BATCH_ATTRIBUTE = "batch"


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
        # Whole columns as Python lists: a row's value by position (.iloc) cost 6 µs, 13
        # CPU-seconds for a million rows before any write. The items are built in
        # DynamoDB's attribute-value form: boto3's TypeSerializer took another 10
        # CPU-seconds a million.
        probabilities = (
            table["probability"].tolist() if "probability" in table.columns else [math.nan] * len(table)
        )
        items: dict[str, dict[str, Any]] = {}
        for record_id, prediction, probability in zip(
            table[id_column].tolist(), table["prediction"].tolist(), probabilities, strict=True
        ):
            key = str(record_id)
            item: dict[str, Any] = {
                ID_ATTRIBUTE: {"S": key},
                BATCH_ATTRIBUTE: batch,
                "event_time": moment,
                "prediction": {"S": str(prediction)},
                "expiration": expires,
            }
            number = float(probability)
            if not math.isnan(number):
                # The shortest text that reads back as the same float, as a DynamoDB number
                # (what TypeSerializer wrote for Decimal(repr(number))). DynamoDB's numbers
                # stop at 1E-130: a smaller probability is logged as 0, where the serializer
                # raised and failed the batch (log_loss clips it to its epsilon either way).
                item["probability"] = {"N": str(Decimal(repr(number))) if abs(number) >= 1e-128 else "0"}
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
