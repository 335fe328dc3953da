"""The prediction log: which batch scored each record id, so a label that comes later finds it.

One DynamoDB item per record id (the key labels arrive by), holding the batch's ledger
item and an expiry, nothing else: the batch's predictions file (S3) has the row's
prediction and probability, and its ledger item where that file is and its event time.
The label join reads the log with BatchGetItem (100 ids a request) and never scans.

The batch monitor logs each chunk's ids *before* it reads their actuals: a label written
while the batch is being scored is then either read by the monitor (written before its
chunk's read) or finds the row logged, and the label join waits for the batch to be
published and joins it. A batch rejected after some of its chunks were logged leaves
those items; the join finds it unscored and counts their labels as without prediction.

Cost per million scored rows, on-demand in us-east-1: writes $1.25 (1M write request
units, items under 1 KB, 40,000 BatchWriteItem requests); storage ~100 bytes a row,
0.1 GB, $0.03 a month, until the TTL (``PredictionLogDays``) removes them; lookups of
their labels $0.12 (strongly consistent, 1 read unit a row). The alternative, an
index over the predictions files in S3, would be cheaper to write but needs a scan or a
second store to find a record id's batch: the read pattern decides.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.config import Config

from modelwatch.actuals import ID_ATTRIBUTE, RequestStats, batch_get_items, batch_write_items

BATCH_ATTRIBUTE = "batch"

# The configuration of the client the batch monitor logs through (modelwatch.aws.client
# merges it into its defaults). botocore checks every request's parameters against the API
# model, attribute by attribute, which cost more than the rest of the request. The items
# are built here, in DynamoDB's form; DynamoDB itself still refuses a malformed one
# (ValidationException).
WRITE_CLIENT_CONFIG = Config(parameter_validation=False)


class PredictionLog:
    def __init__(self, client: Any, table: str, retention_days: int, clock: Any = time.time):
        self.client = client
        self.table = table
        self.retention_days = retention_days
        self.clock = clock

    def record(self, batch_id: str, record_ids: Iterable[Any]) -> int:
        """Log ``record_ids`` as scored by ``batch_id``; returns how many items were written
        (an id given twice is one item). A record id scored again later (a changed file, a
        new model) points to the newer batch."""
        # In DynamoDB's attribute-value form, the values every item shares (the batch, the
        # expiry) one object each: boto3 only reads them, and its TypeSerializer would cost
        # more than the write.
        expires = {"N": str(int(self.clock()) + self.retention_days * 86_400)}
        batch = {"S": batch_id}
        with _cyclic_gc_paused():
            items = {
                key: {ID_ATTRIBUTE: {"S": key}, BATCH_ATTRIBUTE: batch, "expiration": expires}
                for key in map(str, record_ids)
            }
        return batch_write_items(self.client, self.table, list(items.values()), threads=8, typed=True)

    def batches_of(self, ids: Iterable[str], stats: RequestStats | None = None) -> dict[str, list[str]]:
        """The logged record ids among ``ids``, grouped by the batch that scored them."""
        # Strongly consistent: a label written just after its chunk's actuals were read
        # must find the item written just before that read (modelwatch.monitor).
        found = batch_get_items(self.client, self.table, ids, [BATCH_ATTRIBUTE], stats=stats, consistent=True)
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
