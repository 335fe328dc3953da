"""A load test of the local cloud as `modelwatch local up` runs it: 100 uploads from an outside
client within seconds, and every one accounted for.

The uploads: 85 distinct batches on 85 keys, 10 re-uploads of identical bytes to keys already
uploaded (new versions, same content: counted once) and 5 quick overwrites (a changed file on
a key right after its first upload: a new batch). The expected numbers are computed here from
the frames the test wrote, not read from the reports: 100 version reports, 90 ok and 10
duplicates, BatchesProcessed = 90 and RowsScored = the rows of the 90 distinct batches in
CloudWatch, and each key's report.json the one of its newest counted version.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import boto3
import numpy as np

from modelwatch.local.cloud import LocalCloud, RealClock
from tests.model_fixtures import churn_frame

DISTINCT_KEYS = 85
# Keys (by index) re-uploaded with identical bytes, and how many other keys are uploaded in
# between (0: right after the first upload, within the same poll of the bucket).
REUPLOADED_AFTER = {0: 0, 9: 1, 17: 3, 26: 7, 33: 0, 47: 2, 60: 5, 68: 1, 79: 4, 84: 0}
OVERWRITTEN = (4, 21, 38, 55, 72)  # a changed file right after the first upload
PACE_SECONDS = 0.05  # between two keys' first uploads: ~5 s in all, spread over several polls
MODEL_NAME = "churn-load"  # the template's ModelName, set here: the metrics' dimension
DEADLINE_SECONDS = 300  # generous: alone on 2 cores the 100 invocations are done ~15 s after the first


@dataclass(frozen=True)
class Upload:
    key: str
    body: bytes
    rows: int
    version_id: str = ""


def batch_body(rows: int, seed: int, id_prefix: str) -> bytes:
    frame = churn_frame(rows, seed=seed, id_prefix=id_prefix).drop(columns="churned")
    return frame.to_csv(index=False).encode("utf-8")


def planned_uploads() -> list[Upload]:
    """The 100 uploads in the order they are sent."""
    rng = np.random.default_rng(2025)
    firsts = []
    for index in range(DISTINCT_KEYS):
        rows = int(rng.integers(20, 81))
        firsts.append(
            Upload(f"incoming/load-{index:03d}.csv", batch_body(rows, 7000 + index, f"L{index}"), rows)
        )
    plan: list[Upload] = []
    for index, first in enumerate(firsts):
        plan.append(first)
        if index in OVERWRITTEN:
            rows = int(rng.integers(20, 81))
            plan.append(Upload(first.key, batch_body(rows, 8000 + index, f"L{index}b"), rows))
        plan += [firsts[j] for j, gap in REUPLOADED_AFTER.items() if min(j + gap, DISTINCT_KEYS - 1) == index]
    return plan


def test_a_hundred_uploads_in_seconds_are_each_reported_and_counted_once(tmp_path, classifier_dir):
    plan = planned_uploads()
    # The plan is what the issue asks for: 100 uploads, 90 distinct (key, content) pairs on 85 keys.
    distinct = {(u.key, u.body): u.rows for u in plan}
    assert len(plan) == 100 and len(distinct) == 90 and len({u.key for u in plan}) == DISTINCT_KEYS
    assert len({u.body for u in plan}) == 90  # no two keys share content either
    expected_rows = sum(distinct.values())

    cloud = LocalCloud(
        out_dir=tmp_path / "out",
        model_dir=classifier_dir,
        parameters={"ModelName": MODEL_NAME},
        clock=RealClock(),
    )
    with cloud:
        cloud.run_in_background()
        bucket = cloud.bucket_for("incoming/")
        outside = boto3.client(
            "s3",
            endpoint_url=cloud.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="cli",
            aws_secret_access_key="cli",
        )
        # When another process's client sends the 100 uploads, paced between keys; an upload to
        # the key just uploaded (a quick overwrite, an immediate re-upload) is sent at once.
        window_start = datetime.now(UTC) - timedelta(minutes=1)
        started = time.monotonic()
        uploaded: list[Upload] = []
        for number, upload in enumerate(plan):
            if number and upload.key != plan[number - 1].key:
                time.sleep(PACE_SECONDS)
            put = outside.put_object(Bucket=bucket, Key=upload.key, Body=upload.body)
            uploaded.append(Upload(upload.key, upload.body, upload.rows, put["VersionId"]))
        upload_seconds = time.monotonic() - started
        assert len({u.version_id for u in uploaded}) == 100  # each PUT its own version

        # Then every version gets its report under results/<key>/versions/<id>/
        expected_report_keys = {version_report_key(u) for u in uploaded}
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not expected_report_keys <= set(version_report_keys(outside, bucket)):
            missing = expected_report_keys - set(version_report_keys(outside, bucket))
            assert time.monotonic() < deadline, (
                f"{len(missing)} versions without a report: {sorted(missing)[:5]}"
            )
            time.sleep(1)
        # A report is written before its metrics: the invocation is recorded once both are done.
        while monitor_invocations(cloud) < 100:
            assert time.monotonic() < deadline, f"{monitor_invocations(cloud)} of 100 invocations returned"
            time.sleep(0.5)
        # (Printed only now: while a function runs, the local runtime sends all of the
        # process's stdout to the function's log.)
        print(
            f"\n100 uploads sent in {upload_seconds:.1f} s; 100 reports and invocations after "
            f"{time.monotonic() - started:.1f} s"
        )

        assert sorted(version_report_keys(outside, bucket)) == sorted(expected_report_keys)
        reports = {u.version_id: read_json(outside, bucket, version_report_key(u)) for u in uploaded}
        statuses = [report["status"] for report in reports.values()]
        assert statuses.count("ok") == 90 and statuses.count("duplicate") == 10

        # Of two versions with identical bytes, exactly one is ok, and the other names it.
        by_content: dict[tuple[str, bytes], list[Upload]] = {}
        for upload in uploaded:
            by_content.setdefault((upload.key, upload.body), []).append(upload)
        for (key, _), versions in by_content.items():
            status_of = {v.version_id: reports[v.version_id]["status"] for v in versions}
            if len(versions) == 1:
                assert status_of[versions[0].version_id] == "ok", key
                continue
            assert sorted(status_of.values()) == ["duplicate", "ok"], key
            (original,) = [v for v, status in status_of.items() if status == "ok"]
            (copy,) = [v for v, status in status_of.items() if status == "duplicate"]
            assert reports[copy]["duplicate_of"]["version_id"] == original, key
            assert reports[copy]["duplicate_of"]["report"].endswith(f"/versions/{original}/report.json")

        # Each ok report scored its own version, all rows of it.
        for upload in uploaded:
            report = reports[upload.version_id]
            assert report["batch"]["key"] == upload.key
            assert report["batch"]["version_id"] == upload.version_id
            if report["status"] == "ok":
                assert report["rows"] == upload.rows and report["rows_scored"] == upload.rows

        # Each key's report.json is that of its newest counted version (by upload order): the
        # overwrite's for an overwritten key; for a re-uploaded key the version that owns the
        # bytes, since a duplicate never replaces the key's report.
        for key in {u.key for u in uploaded}:
            counted = [u for u in uploaded if u.key == key and reports[u.version_id]["status"] == "ok"]
            newest = read_json(outside, bucket, f"results/{key.removeprefix('incoming/')}/report.json")
            assert newest == reports[counted[-1].version_id], key
        same_second = 0
        for index in OVERWRITTEN:
            key = f"incoming/load-{index:03d}.csv"
            first, second = [u.version_id for u in uploaded if u.key == key]
            newest = read_json(outside, bucket, f"results/load-{index:03d}.csv/report.json")
            assert newest["batch"]["version_id"] == second, key
            # (S3 times are whole seconds: a tie is decided by the events' sequencers.)
            same_second += reports[first]["uploaded_at"] == reports[second]["uploaded_at"]
        print(f"{same_second} of {len(OVERWRITTEN)} overwrites in the same second as the first upload")

        # CloudWatch counted each distinct batch once, and all its rows.
        sums = {
            name: metric_sum(cloud, name, window_start, datetime.now(UTC) + timedelta(minutes=1))
            for name in ("BatchesProcessed", "RowsScored")
        }
        print(f"BatchesProcessed Sum {sums['BatchesProcessed']:g}, RowsScored Sum {sums['RowsScored']:g}")
        assert sums == {"BatchesProcessed": 90, "RowsScored": expected_rows}
        # One invocation per version: the poller delivered none twice, and none failed.
        batch_invocations = [i for i in cloud.runtime.invocations if i.function == "BatchMonitorFunction"]
        assert len(batch_invocations) == 100
        assert all(i.ok and i.attempts == 1 for i in batch_invocations)


def version_report_key(upload: Upload) -> str:
    return f"results/{upload.key.removeprefix('incoming/')}/versions/{upload.version_id}/report.json"


def version_report_keys(s3, bucket: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="results/"):
        keys += [
            item["Key"]
            for item in page.get("Contents", [])
            if "/versions/" in item["Key"] and item["Key"].endswith("/report.json")
        ]
    return keys


def read_json(s3, bucket: str, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def monitor_invocations(cloud: LocalCloud) -> int:
    return sum(i.function == "BatchMonitorFunction" for i in cloud.runtime.invocations)


def metric_sum(cloud: LocalCloud, name: str, start: datetime, end: datetime) -> float:
    datapoints = cloud.clients.cloudwatch.get_metric_statistics(
        Namespace="ModelWatch",
        MetricName=name,
        Dimensions=[{"Name": "ModelName", "Value": MODEL_NAME}],
        StartTime=start,
        EndTime=end,
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    return sum(point["Sum"] for point in datapoints)
