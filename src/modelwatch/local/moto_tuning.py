"""What the embedded moto server changes in moto: two shortcuts and two corrections.

The shortcuts make it fast enough for a 30-second demo without changing what a response
says (tests/unit/test_moto_server.py compares them with moto's own output):

- DynamoDB items skip moto's generic, shape-driven serializer. It visits every member of
  every AttributeValue through the service model and spent ~45 ms of a 57 ms BatchGetItem
  of 100 small items; the items are already in DynamoDB's wire form, so they are written
  as they are (binary values base64-encoded, as the generic serializer does).
- The request router remembers which service a Host header names, instead of matching
  it against ~180 URL patterns on every request (0.9 ms each).

The corrections: moto 5.2.5's GetMetricData picks a MetricStat's data by metric name and
dimensions but not namespace, and compares the dimension lists in the order they were
written; CloudWatch identifies a metric by namespace, name and the set of its dimensions
(so a query without dimensions matches only a metric without any). The local alarm
evaluator and the alert notifier read metrics with MetricStat-only requests, which get
the correction; a request that also holds an expression (metric math, Metrics Insights)
is left to moto as it is. Its GetMetricStatistics matches every metric that has the
dimensions asked for among others; CloudWatch only the metric with exactly those.

And one race: moto numbers a stream record with the shard's record count, then appends it.
The server answers requests in threads, and two writes to one table at once (the actuals
loader writes in four threads) could get the same sequence number. GetRecords then never
gets past the last of two such records: its next iterator starts after the number, which
is the second record's own index. A stream reader waiting for the end of the stream read
that record again for ever (a hung `make test`). Records are numbered under a lock here.

Only the moto server process (``modelwatch.local.moto_server``) installs them.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from moto.core.serialize import SERVICE_SPECIFIC_SERIALIZERS, JSONSerializer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication


class DynamoDBSerializer(JSONSerializer):
    """moto's JSON serializer, with AttributeValues written directly instead of by shape."""

    def _serialize(self, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if shape.name == "AttributeValue" and isinstance(value, dict):
            serialized[key] = self._attribute_value(value)
            return
        super()._serialize(serialized, value, shape, key)

    def _attribute_value(self, value: dict[str, Any]) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        for member, inner in value.items():
            if inner is None:
                continue
            if member == "B":
                wire[member] = self._base64(inner)
            elif member == "BS":
                wire[member] = [self._base64(item) for item in inner]
            elif member == "M":
                wire[member] = {name: self._attribute_value(item) for name, item in inner.items()}
            elif member == "L":
                wire[member] = [self._attribute_value(item) for item in inner]
            elif member in ("S", "N"):
                wire[member] = str(inner)
            elif member in ("SS", "NS"):
                wire[member] = [str(item) for item in inner]
            else:  # BOOL, NULL
                wire[member] = inner
        return wire


def use_dynamodb_serializer() -> None:
    """Serialize DynamoDB's JSON responses with DynamoDBSerializer, in this process."""
    SERVICE_SPECIFIC_SERIALIZERS.setdefault("dynamodb", {})["json"] = DynamoDBSerializer


class CachingDispatcher(DomainDispatcherApplication):
    """moto's router with the Host -> service lookup cached (it depends on the host alone)."""

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one dispatcher per server process
    def get_backend_for_host(self, host: str | None) -> Any:
        return super().get_backend_for_host(host)


def _identity(namespace: str, name: str, dimensions: Any) -> tuple[str, str, frozenset[tuple[str, str]]]:
    return namespace, name, frozenset(dimensions)


def exact_metric_get_metric_data(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap moto's CloudWatchBackend.get_metric_data: MetricStat queries see their own metric only.

    Periods start at StartTime (as moto's do), each period's statistic is computed by moto's
    Statistics, and only periods with data are returned. Requests with expressions (metric
    math, Metrics Insights) and invalid time ranges are left to moto.
    """
    from moto.cloudwatch.models import Statistics

    def get_metric_data(
        backend: Any,
        queries: list[dict[str, Any]],
        start_time: datetime,
        end_time: datetime,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        start, end = start_time.replace(microsecond=0), end_time.replace(microsecond=0)
        if not queries or start >= end or any("MetricStat" not in query for query in queries):
            return original(backend, queries, start_time, end_time, scan_by)
        in_range = [datum for datum in backend.get_all_metrics() if start <= datum.timestamp < end]
        results = []
        for query in queries:
            stat = query["MetricStat"]
            metric = stat["Metric"]
            wanted = _identity(
                metric["Namespace"],
                metric["MetricName"],
                ((d["Name"], d["Value"]) for d in metric.get("Dimensions") or ()),
            )
            period = timedelta(seconds=int(stat["Period"]))
            periods: dict[int, list[Any]] = {}
            for datum in in_range:
                identity = _identity(
                    datum.namespace, datum.name, ((d.name, d.value) for d in datum.dimensions)
                )
                if identity == wanted and (not stat.get("Unit") or datum.unit == stat["Unit"]):
                    periods.setdefault((datum.timestamp - start) // period, []).append(datum)
            timestamps, values = [], []
            for index in sorted(periods, reverse=scan_by == "TimestampDescending"):
                statistics = Statistics([stat["Stat"]], start + index * period)
                statistics.metric_data = periods[index]
                values.append(statistics.get_statistics_for_type(stat["Stat"]))
                timestamps.append(statistics.timestamp)
            if query.get("ReturnData", True):
                results.append(
                    {
                        "id": query["Id"],
                        "label": query.get("Label") or f"{metric['MetricName']} {stat['Stat']}",
                        "values": values,
                        "timestamps": timestamps,
                        "status_code": "Complete",
                    }
                )
        return results

    return get_metric_data


def exact_metric_get_metric_statistics(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap moto's CloudWatchBackend.get_metric_statistics: the dimensions asked for name one
    metric (CloudWatch's rule), not every metric that has them among others. moto matches
    a subset, so ErrorRate of {ModelName} would also count ErrorRate of {ModelName, Clock}."""

    class _Only:
        def __init__(self, data: list[Any]):
            self.data = data

        def get_all_metrics(self) -> list[Any]:  # all moto's method reads of its backend
            return self.data

    def get_metric_statistics(backend: Any, *args: Any, **kwargs: Any) -> Any:
        names = (
            "namespace",
            "metric_name",
            "start_time",
            "end_time",
            "period",
            "stats",
            "dimensions",
            "unit",
        )
        bound = dict(zip(names, args, strict=False)) | kwargs
        wanted = frozenset((d["Name"], d["Value"]) for d in bound.get("dimensions") or ())
        data = [
            datum
            for datum in backend.get_all_metrics()
            if frozenset((d.name, d.value) for d in datum.dimensions) == wanted
        ]
        return original(_Only(data), **bound)

    return get_metric_statistics


def use_exact_metric_matching() -> None:
    """Install the exact-matching GetMetricData and GetMetricStatistics on moto's CloudWatch
    backend, in this process (the moto server's; the tests' in-process moto too)."""
    from moto.cloudwatch.models import CloudWatchBackend

    if getattr(CloudWatchBackend, "_modelwatch_exact", False):
        return
    CloudWatchBackend.get_metric_data = exact_metric_get_metric_data(  # type: ignore[method-assign]
        CloudWatchBackend.get_metric_data
    )
    CloudWatchBackend.get_metric_statistics = exact_metric_get_metric_statistics(  # type: ignore[method-assign]
        CloudWatchBackend.get_metric_statistics
    )
    CloudWatchBackend._modelwatch_exact = True  # type: ignore[attr-defined]


def use_serial_stream_records() -> None:
    """Number and append each DynamoDB stream record under one lock (see the module's
    docstring), in this process (the moto server's)."""
    from moto.dynamodb.models.table import StreamShard

    if getattr(StreamShard, "_modelwatch_serial", False):
        return
    add = StreamShard.add
    lock = threading.Lock()

    @functools.wraps(add)
    def serial_add(shard: Any, old: Any, new: Any) -> None:
        with lock:
            add(shard, old, new)

    StreamShard.add = serial_add  # type: ignore[method-assign,assignment]
    StreamShard._modelwatch_serial = True  # type: ignore[attr-defined]
