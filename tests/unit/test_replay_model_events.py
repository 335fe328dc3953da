"""A retrain decision record as a replay model event (SPEC "The replay file": model_events[])."""

from __future__ import annotations

from datetime import UTC, datetime

from modelwatch.local.backtest import model_event
from modelwatch.retraining import CANDIDATE, NOT_BETTER, REFUSED, RetrainDecision

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def decision(kind: str, challenger_version: str | None) -> dict:
    made = RetrainDecision(
        decision=kind,
        reason="why",
        model_name="churn",
        champion_version="v1",
        decided_at=datetime(2026, 12, 1, 5, 0, tzinfo=UTC),
        trigger={"kind": "alarm"},
        quality_metric="ErrorRate",
        higher_is_better=False,
        min_improvement=0.01,
        holdout={"rows": 300, "from": "x", "to": "y", "batches": 1},
        champion_metrics={"ErrorRate": 0.3},
        challenger_metrics={"ErrorRate": 0.295} if kind != REFUSED else {},
        challenger_version=challenger_version,
    )
    return made.as_dict()


def test_each_decision_is_the_event_the_replay_file_names():
    events = [
        model_event(f"models/decisions/t-{kind}.json", decision(kind, version), AT, "b")
        for kind, version in ((CANDIDATE, "v2"), (NOT_BETTER, None), (REFUSED, None))
    ]

    assert [(e["event"], e["version"], e["from_version"]) for e in events] == [
        ("retrained", "v2", "v1"),
        ("not_promoted", None, "v1"),
        ("refused", None, "v1"),
    ]
    assert events[1]["holdout"] == {
        "rows": 300,
        "champion": {"ErrorRate": 0.3},
        "challenger": {"ErrorRate": 0.295},
    }
    assert events[2]["holdout"] == {"rows": 300, "champion": {"ErrorRate": 0.3}, "challenger": {}}
    assert {e["time"] for e in events} == {"2026-11-30T09:00:00+00:00"}  # the replay's time, not decided_at
    assert {e["recorded_at"] for e in events} == {"2026-12-01T05:00:00+00:00"}
    assert events[0]["record"] == "s3://b/models/decisions/t-candidate.json"
