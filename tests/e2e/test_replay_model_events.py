"""The replay file's model events from promotion records (models/promotions/), and each
batch's model version.

Promotion is another part of the product; its records are written here in the format it
writes them (``models/promotions/<stamp>-<event>-<version>.json`` holding time, event,
from_version, to_version and the holdout both models were scored on), at the moment a
promotion would happen: while a batch's period is running. The retrain function's own
records are covered by test_local_retraining.py and test_retrain_practice_question.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from modelwatch.local.backtest import Backtest, BatchResult
from modelwatch.local.cloud import LocalCloud, VirtualClock
from tests.model_fixtures import churn_frame

HOLDOUT = {"rows": 240, "champion": {"ErrorRate": 0.31}, "challenger": {"ErrorRate": 0.27}}


def promotion_record(event: str, from_version: str, to_version: str, at: datetime) -> dict:
    return {
        "time": at.isoformat(),
        "event": event,
        "from_version": from_version,
        "to_version": to_version,
        "holdout": HOLDOUT,
    }


def test_promotion_records_become_model_events_at_the_virtual_time_they_appeared(tmp_path, classifier_dir):
    batches = []
    for number in range(3):
        frame = churn_frame(60, seed=500 + number, id_prefix=f"ev{number}").drop(columns="churned")
        path = tmp_path / f"batch-{number}.csv"
        frame.to_csv(path, index=False)
        batches.append(path)
    cloud = LocalCloud(
        out_dir=tmp_path / "out", model_dir=classifier_dir, clock=VirtualClock(datetime.now(UTC))
    )
    with cloud:
        bucket = cloud.stack.name_of("IngestBucket")
        wall = datetime.now(UTC)
        # Written in the second period: a promotion, then (a minute later by the wall clock) a
        # rollback, stored so that listing order (by key) is the reverse of the records' times.
        writes = {
            1: [
                (
                    "models/promotions/b-rolled_back-test.json",
                    promotion_record("rolled_back", "v2", "test", wall),
                ),
                (
                    "models/promotions/a-promoted-v2.json",
                    promotion_record("promoted", "test", "v2", wall - timedelta(minutes=1)),
                ),
            ]
        }

        def promote_while_the_batch_runs(result: BatchResult) -> None:
            for key, record in writes.get(result.index, []):
                cloud.clients.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode())

        backtest = Backtest(cloud, on_processed=promote_while_the_batch_runs)
        backtest.run(batches)
        document = backtest.document()

    second_end = backtest.periods[1].start + timedelta(hours=1)
    assert [(e["event"], e["version"], e["from_version"]) for e in document["model_events"]] == [
        ("promoted", "v2", "test"),
        ("rolled_back", "test", "v2"),
    ]
    for event in document["model_events"]:
        assert event["time"] == second_end.isoformat()
        assert event["holdout"] == HOLDOUT
        assert event["record"].startswith(f"s3://{bucket}/models/promotions/")
    assert backtest.periods[1].events[-2:] == ["model promoted v2", "model rolled_back test"]
    assert [sum(e.startswith("model ") for e in p["events"]) for p in document["periods"]] == [0, 2, 0]
    # Every batch names the version that scored it (the fixture's: this branch switches no layer)
    assert [b["model_version"] for b in document["batches"]] == ["test", "test", "test"]
