"""A ledger write whose response is lost is applied once: botocore sends it again, and its
condition then fails against its own effect, which must not read as another writer's.

The fault is injected (moto cannot lose a response): a botocore ``needs-retry`` hook
answers "retry now" to the first successful call of one operation, so the same request
reaches moto twice, as it reaches DynamoDB when a response times out after the write.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws

from modelwatch.ledger import (
    BatchLedger,
    advance_totals,
    batch_state,
    pool_item_id,
    restore_totals,
    update_pool,
)
from modelwatch.results import BatchObject
from modelwatch.row_pool import DRIFT, PoolEntry, PoolRows, add_entry, entry_name, take_if_full, withdraw
from tests.template_resources import create_table


@pytest.fixture
def ledger() -> Iterator[BatchLedger]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        yield BatchLedger(dynamodb, create_table(dynamodb, "BatchLedgerTable", "ledger"))


@contextmanager
def response_lost_once_injected(ledger: BatchLedger, operation: str) -> Iterator[dict[str, int]]:
    """The next successful ``operation`` call of the ledger's client is sent a second time."""
    sent = {"again": 0}

    def lose(attempts: int, caught_exception: Any, **kwargs: Any) -> int | None:
        if caught_exception is not None or attempts != 1 or sent["again"]:
            return None
        sent["again"] += 1
        return 0  # "retry after 0 s": botocore resends the request

    events = ledger.dynamodb.meta.events
    event = f"needs-retry.dynamodb.{operation}"
    events.register(event, lose)
    try:
        yield sent
    finally:
        events.unregister(event, lose)


def published_batch(ledger: BatchLedger, totals: dict[str, tuple[int, float]]) -> str:
    batch = BatchObject("bucket", "incoming/a.csv", version_id="v1")
    claim = ledger.claim(batch, "digest", "model")
    assert ledger.mark_published(claim, batch, "2026-12-01T00:00:00+00:00", totals, predictions_version="p1")
    return claim.item_id


def test_a_publish_mark_whose_response_was_lost_is_still_this_attempts(ledger):
    batch = BatchObject("bucket", "incoming/a.csv", version_id="v1")
    claim = ledger.claim(batch, "digest", "model")
    with response_lost_once_injected(ledger, "UpdateItem") as sent:
        # False would tell the monitor another attempt published: it would publish nothing.
        assert ledger.mark_published(claim, batch, "2026-12-01T00:00:00+00:00", {}, predictions_version="p1")
    assert sent["again"] == 1
    # A second attempt of the same batch still finds it published.
    assert not ledger.mark_published(claim, batch, "2026-12-01T00:00:00+00:00", {}, predictions_version="p1")


def test_advancing_totals_whose_response_was_lost_is_not_a_conflict(ledger):
    item_id = published_batch(ledger, {"ErrorRate": (40, 8.0)})
    state = batch_state(ledger, item_id)
    with response_lost_once_injected(ledger, "UpdateItem") as sent:
        revision = advance_totals(ledger, state, {"ErrorRate": (50, 11.0)}, "p2")
    assert sent["again"] == 1
    after = batch_state(ledger, item_id)
    assert (revision, after.revision) == (1, 1)
    assert after.totals == {"ErrorRate": (50, 11.0)}
    assert after.predictions_version == "p2"


def test_restoring_totals_whose_response_was_lost_takes_them_back_once(ledger):
    item_id = published_batch(ledger, {"ErrorRate": (40, 8.0)})
    state = batch_state(ledger, item_id)
    advanced = {"ErrorRate": (50, 11.0)}
    revision = advance_totals(ledger, state, advanced, "p2")
    with response_lost_once_injected(ledger, "UpdateItem") as sent:
        assert restore_totals(ledger, state, revision, advanced, newly=10)
    assert sent["again"] == 1
    after = batch_state(ledger, item_id)
    # Back to 40 rows and 8.0 (read as another join's advance, the resent write would
    # take the 10 rows out a second time: 30 rows, 5.0, and 10 labels left unannounced).
    assert after.totals == {"ErrorRate": (40, 8.0)}
    assert after.predictions_version == "p1"
    assert after.unannounced == 0


@pytest.mark.parametrize("flush", [False, True], ids=["adding", "flushing"])
def test_a_pool_update_whose_response_was_lost_counts_its_rows_once(ledger, flush):
    held = {"ErrorRate": (12, 3.0, 0.0, 1.0)}
    update_pool(ledger, "model", held, flush_at=30)
    change = {"ErrorRate": (20 if flush else 5, 4.0, 0.0, 1.0)}
    with response_lost_once_injected(ledger, "UpdateItem") as sent:
        given = update_pool(ledger, "model", change, flush_at=30)
    assert sent["again"] == 1
    item = ledger.dynamodb.get_item(TableName=ledger.table, Key={"id": {"S": pool_item_id("model")}})["Item"]
    left = update_pool(ledger, "model", {}, flush_at=1)  # whatever the pool holds now
    if flush:
        # 12 + 20 rows reach 30: all of them to publish, the pool empty (read as another
        # writer's, the resent flush would find it empty and give nothing: 32 rows lost).
        assert given == {"ErrorRate": (32, 7.0, 0.0, 1.0)}
        assert left == {}
    else:
        assert given == {}
        assert left == {"ErrorRate": (17, 7.0, 0.0, 1.0)}  # not 22 rows, 11.0
    assert int(item["pool_revision"]["N"]) == 2


def pooled(ledger: BatchLedger, rows: int, batch: str) -> PoolEntry:
    entry = PoolEntry(
        name=entry_name(f"batch#{batch}"),
        rows=rows,
        added_at=int(ledger.clock()),
        batch=f"s3://bucket/incoming/{batch}.csv",
        version_id="v1",
        data=PoolRows(rows=rows, labels=[0] * rows).encode(),
    )
    assert add_entry(ledger, "model", DRIFT, entry) is None
    return entry


def test_taking_a_full_row_pool_whose_response_was_lost_still_gives_its_rows(ledger):
    first, second = pooled(ledger, 120, "a"), pooled(ledger, 90, "b")
    with response_lost_once_injected(ledger, "UpdateItem") as sent:
        taken = take_if_full(ledger, "model", DRIFT, threshold=200)
    assert sent["again"] == 1
    # Read as another invocation's take, the resent one would find the pool empty and give
    # nothing: 210 rows never published.
    assert sorted(entry.name for entry in taken.entries) == sorted([first.name, second.name])
    assert take_if_full(ledger, "model", DRIFT, threshold=1).entries == []


def test_withdrawing_an_entry_whose_response_was_lost_leaves_no_counted_marker(ledger):
    entry = pooled(ledger, 50, "a")
    with response_lost_once_injected(ledger, "UpdateItem") as sent:
        withdraw(ledger, "model", DRIFT, entry.name)
    assert sent["again"] == 1
    # The retry adds its rows again (a "counted" marker would keep them out for good).
    assert add_entry(ledger, "model", DRIFT, entry) is None
    assert take_if_full(ledger, "model", DRIFT, threshold=50).entries == [entry]
