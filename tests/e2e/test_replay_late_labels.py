"""`modelwatch replay --labels-delay N`: each batch's labels go through the actuals path N periods late.

Three batches and one actuals file holding their labels plus rows of no batch. What is
checked is where the labels show: the period events of the replay file, and the actuals
table itself, counted as each period ends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelwatch.cli.main import main
from modelwatch.local.backtest import Backtest, PeriodResult
from modelwatch.local.cloud import LocalCloud, VirtualClock
from tests.model_fixtures import churn_frame
from tests.template_resources import TEMPLATE_PATH, load_template

ROWS = 200
UNBATCHED = 20


def write_history(directory: Path) -> tuple[Path, list[Path]]:
    """history-01..03.csv (200 rows each) and labels.csv: their labels, shuffled, and 20 of no batch."""
    batches, labels = [], []
    for number in range(1, 4):
        frame = churn_frame(ROWS, seed=700 + number, id_prefix=f"late{number}")
        labels.append(pd.DataFrame({"record_id": frame["record_id"], "churned": frame.pop("churned")}))
        path = directory / f"history-{number:02d}.csv"
        frame.to_csv(path, index=False)
        batches.append(path)
    orphans = pd.DataFrame({"record_id": [f"orphan-{i}" for i in range(UNBATCHED)], "churned": 1})
    actuals = pd.concat([*labels, orphans]).sample(frac=1, random_state=7)
    actuals_path = directory / "labels.csv"
    actuals.to_csv(actuals_path, index=False)
    return actuals_path, batches


def replay(tmp_path: Path, model_dir: Path, delay: int) -> tuple[dict, list[int]]:
    """The replay file, and the number of items in the actuals table at the end of each period."""
    actuals_path, batches = write_history(tmp_path)
    cloud = LocalCloud(out_dir=tmp_path / "out", model_dir=model_dir, clock=VirtualClock(datetime.now(UTC)))
    counts: list[int] = []
    with cloud:
        table = cloud.stack.name_of("ActualsTable")

        def count_labels(period: PeriodResult) -> None:
            counts.append(cloud.clients.dynamodb.scan(TableName=table, Select="COUNT")["Count"])

        backtest = Backtest(cloud, on_period=count_labels)
        backtest.run(batches, actuals=[actuals_path], labels_delay_periods=delay)
        return backtest.document(), counts


@pytest.mark.parametrize("delay", [0, 2])
def test_each_batchs_labels_arrive_delay_periods_after_it(tmp_path, classifier_dir, delay):
    document, counts = replay(tmp_path, classifier_dir, delay)

    # One period per batch, then `delay` more until the last batch's labels are in
    periods = document["periods"]
    assert len(periods) == 3 + delay
    starts = [datetime.fromisoformat(period["start"]) for period in periods]
    batch_times = [datetime.fromisoformat(batch["batch_time"]) for batch in document["batches"]]
    period = batch_times[1] - batch_times[0]
    assert starts == [batch_times[0] + index * period for index in range(3 + delay)]

    # The rows of no batch at the start; batch i's labels in period i + delay, before that period's batch
    loads = [[e for e in period["events"] if e.startswith(("loaded", "uploaded"))] for period in periods]
    expected: list[list[str]] = [[] for _ in periods]
    expected[0].append(f"loaded labels of no batch from labels--no-batch.csv ({UNBATCHED} rows)")
    for index in range(3):
        expected[index + delay].append(f"loaded labels of history-{index + 1:02d}.csv ({ROWS} rows)")
    for index in range(3):
        expected[index].append(f"uploaded history-{index + 1:02d}.csv")
    assert loads == expected

    # The actuals table, as each period ended, held exactly the labels due by then
    assert counts == [UNBATCHED + ROWS * min(3, max(0, index - delay + 1)) for index in range(3 + delay)]

    # A batch whose labels came with it was scored with them; a delayed one without
    batches = document["batches"]
    assert [batch["labeled_rows"] for batch in batches] == [ROWS if delay == 0 else 0] * 3
    assert ("ErrorRate" in batches[0]["metrics"]) == (delay == 0)
    for batch, period in zip(batches, periods, strict=False):
        assert batch["alarms"] == period["alarms"] and "QualityAlarm" in period["alarms"]
        # final_metrics: over every label received by the end; what does not depend on labels is unchanged
        assert {name: batch["final_metrics"][name] for name in batch["metrics"]} == batch["metrics"]

    # LabelsStaleAlarm: OK once labels are joined, at upload or late (stamped when they came, on
    # the replay's clock); before that no label was joined (the rows of no batch join nothing)
    stale = [period["alarms"]["LabelsStaleAlarm"] for period in periods]
    assert stale == ["ALARM"] * delay + ["OK"] * 3


def test_replay_cli_takes_labels_delay_and_writes_the_periods(tmp_path, classifier_dir, capfd):
    actuals_path, batches = write_history(tmp_path)
    summary = tmp_path / "replay.json"
    arguments = ["replay", "--model-dir", str(classifier_dir), "--actuals", str(actuals_path)]
    arguments += ["--labels-delay", "1", "--json", str(summary), *map(str, batches[:2])]

    assert main(arguments) == 0

    document = json.loads(summary.read_text())
    assert [len(document["periods"]), len(document["batches"])] == [3, 2]
    assert "loaded labels of history-02.csv (200 rows)" in document["periods"][2]["events"]
    assert "period 3 (" in capfd.readouterr().out


def test_replay_cli_refuses_a_negative_labels_delay(tmp_path, classifier_dir, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "replay",
                "--model-dir",
                str(classifier_dir),
                "--labels-delay",
                "-1",
                "--json",
                "x.json",
                "b.csv",
            ]
        )
    assert "number of alarm periods" in capsys.readouterr().err


# Writes down the ids and creation time of every actuals-table change it is handed.
LABEL_RECORDER = """\
import json
import os
from pathlib import Path


def lambda_handler(event, context):
    with (Path(os.environ["LAMBDA_TASK_ROOT"]) / "received.jsonl").open("a") as log:
        for record in event["Records"]:
            change = record["dynamodb"]
            entry = {"id": change["Keys"]["record_id"]["S"], "created": change["ApproximateCreationDateTime"]}
            log.write(json.dumps(entry) + "\\n")
"""


def template_with_a_label_recorder(directory: Path) -> Path:
    """template.yaml, plus a stream on the actuals table and a function that records its records
    (where the label join will be): the stack's own code is linked in, the recorder written here."""
    template = load_template()
    template["Resources"]["ActualsTable"]["Properties"]["StreamSpecification"] = {
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    }
    template["Resources"]["LabelRecorderFunction"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": "label_recorder",
            "Handler": "app.lambda_handler",
            "Events": {
                "NewActuals": {
                    "Type": "DynamoDB",
                    "Properties": {
                        "Stream": {"Fn::GetAtt": ["ActualsTable", "StreamArn"]},
                        "StartingPosition": "TRIM_HORIZON",
                        "BatchSize": 1000,
                        "MaximumBatchingWindowInSeconds": 5,
                    },
                }
            },
        },
    }
    for shared in ("functions", "layers"):
        (directory / shared).symlink_to(TEMPLATE_PATH.parent / shared)
    (directory / "label_recorder").mkdir()
    (directory / "label_recorder" / "app.py").write_text(LABEL_RECORDER)
    path = directory / "template.yaml"
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    return path


def test_delayed_labels_reach_the_actuals_tables_stream_in_their_period_stamped_with_its_time(
    tmp_path, classifier_dir
):
    # Given a stack whose actuals table has a stream-triggered function, and a one-period delay
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    template = template_with_a_label_recorder(stack_dir)
    actuals_path, batches = write_history(tmp_path)
    cloud = LocalCloud(
        out_dir=tmp_path / "out",
        template_path=template,
        model_dir=classifier_dir,
        clock=VirtualClock(datetime.now(UTC)),
    )
    with cloud:
        backtest = Backtest(cloud)

        # When the three batches are replayed
        backtest.run(batches, actuals=[actuals_path], labels_delay_periods=1)
        document = backtest.document()

    # Then the function got every label once, each stamped with the start of the period it
    # was loaded in: the rows of no batch in the first, each batch's labels one period after it
    received = [json.loads(line) for line in (stack_dir / "label_recorder" / "received.jsonl").open()]
    starts = [datetime.fromisoformat(period["start"]).timestamp() for period in document["periods"]]
    by_period = {start: {entry["id"] for entry in received if entry["created"] == start} for start in starts}
    assert len(received) == UNBATCHED + 3 * ROWS == sum(len(ids) for ids in by_period.values())
    assert by_period[starts[0]] == {f"orphan-{i}" for i in range(UNBATCHED)}
    for batch, start in zip(batches, starts[1:], strict=True):
        assert by_period[start] == set(pd.read_csv(batch)["record_id"])
    # and the periods say so
    stream_events = [[e for e in p["events"] if "LabelRecorderFunction" in e] for p in document["periods"]]
    assert stream_events == [
        [
            f"LabelRecorderFunction got {count} stream record(s) of {cloud.stack.name_of('ActualsTable')} "
            "(1 invocation(s))"
        ]
        for count in (UNBATCHED, ROWS, ROWS, ROWS)
    ]
