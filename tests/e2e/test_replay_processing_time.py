"""A replay processes each batch at its virtual time, not at the wall clock's.

The replay stamps batches in a virtual past. Processed on the wall clock, every batch
looked processed long after its event time, and its report said its datapoints were
outside the alarms' window (event_time.lag_note) while the replay's own alarms evaluated
them. The expected times here are the ones the test chose, not read back from the code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from modelwatch.local.backtest import Backtest
from modelwatch.local.cloud import LocalCloud, VirtualClock
from modelwatch.results import BatchObject
from tests.model_fixtures import churn_frame
from tests.template_resources import load_template

LAG_NOTE = "before this batch was processed, more than the alarms look back over"


def test_replayed_batches_are_processed_at_the_replays_time_and_only_a_late_one_gets_the_lag_note(
    tmp_path, classifier_dir
):
    # Given two batches replayed two days back: from the wall clock, far beyond the alarms'
    # look-back (5 h at the template's defaults) ...
    paths = []
    for number in (1, 2):
        path = tmp_path / f"history-{number}.csv"
        churn_frame(120, seed=300 + number, id_prefix=f"clock{number}").drop(columns="churned").to_csv(
            path, index=False
        )
        paths.append(path)
    period = timedelta(seconds=int(load_template()["Parameters"]["AlarmPeriodSeconds"]["Default"]))
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    cloud = LocalCloud(out_dir=tmp_path / "out", model_dir=classifier_dir, clock=VirtualClock(start))
    with cloud:
        backtest = Backtest(cloud)
        results = backtest.run(paths, start=start)

        # ... then a batch stamped 10 hours before the replay's clock, beyond that look-back
        processed = cloud.clock.now()
        late_time = processed - timedelta(hours=10)
        # The first batch's rows under new ids: the same bytes under another key are a duplicate.
        header, *rows = paths[0].read_text().splitlines()
        body = "\n".join([header, *(f"late-{row}" for row in rows)]) + "\n"
        dispatch = cloud.upload(
            "incoming/late.csv", body.encode(), metadata={"batch-time": late_time.isoformat()}
        )
        late_key = BatchObject(dispatch.bucket, "incoming/late.csv").newest_report_key
        late = json.loads(cloud.clients.s3.get_object(Bucket=dispatch.bucket, Key=late_key)["Body"].read())
        alarm = next(iter(cloud.stack.alarms.values()))  # the namespace and dimensions alarms watch
        lag_points = cloud.clients.cloudwatch.get_metric_statistics(
            Namespace=alarm.namespace,
            MetricName="EventTimeLagSeconds",
            Dimensions=[{"Name": name, "Value": value} for name, value in alarm.dimensions],
            StartTime=start - period,
            EndTime=processed + period,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]

    # Then each replayed batch was processed at its period's start, on time: no lag note
    for index, result in enumerate(results):
        assert result.status == "ok"
        assert datetime.fromisoformat(result.report["processed_at"]) == start + index * period
        assert datetime.fromisoformat(result.report["event_time"]) == start + index * period
        assert not [note for note in result.report["notes"] if LAG_NOTE in note]
    # ... while the late batch's lag is measured from the replay's clock (10 h, not 2 days)
    assert late["status"] == "ok"
    assert datetime.fromisoformat(late["processed_at"]) == processed
    (note,) = [note for note in late["notes"] if LAG_NOTE in note]
    assert "is 10.0 h before this batch was processed" in note
    # ... and EventTimeLagSeconds landed at the processing times, where the replay's alarms read it
    lags = {point["Timestamp"]: point["Maximum"] for point in lag_points}
    assert lags == {
        start: 0.0,
        start + period: 0.0,
        processed: timedelta(hours=10).total_seconds(),
    }
