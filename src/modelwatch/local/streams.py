"""DynamoDB stream records to their functions, as Lambda's event source mappings deliver them.

moto keeps each stream (describe_stream, get_shard_iterator, get_records) but invokes no
function of ours, so the local cloud polls the streams itself: for every mapping of the
template, each shard is read in order and its records are handed to the function in
batches of at most BatchSize, synchronously: the next batch of a shard waits for the
previous one, as Lambda's poller does.

A batch the function fails on follows the mapping's error handling (AWS Lambda developer
guide, "DynamoDB event source mappings: error handling"):

- with BisectBatchOnFunctionError the batch is split in two and each half is handed over
  on its own; splitting does not use up retries;
- a batch that cannot be split (one record, or no bisecting) is retried up to
  MaximumRetryAttempts times; then a record describing it (DDBStreamBatchInfo, not the
  records themselves) goes to the OnFailure destination, and the shard moves on;
- MaximumRetryAttempts -1 (Lambda's default) retries until the record expires, 24 hours:
  the shard waits at the failing batch, which is retried once on every later poll.

What is not emulated is refused when the stack is built (see ``mapping_from_template``):
a mapping the local cloud would run differently from Lambda must not pass silently.
MaximumBatchingWindowInSeconds only groups records: locally a batch is what has arrived by
the poll (every second on the real clock; everything pending when a replay drains).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelwatch.local.runtime import Invocation, LambdaRuntime

DEFAULT_BATCH_SIZE = 100  # Lambda's default for DynamoDB streams
UNTIL_EXPIRY = -1  # MaximumRetryAttempts / MaximumRecordAgeInSeconds: until the record expires
GET_RECORDS_LIMIT = 1000  # the most GetRecords returns in one call
# A function whose stream writes feed its own stream again would loop forever, in AWS too;
# a replay's drain stops after this many passes and says so instead of hanging.
MAX_DRAIN_PASSES = 100
# Event source mapping settings the local poller does not implement: refused, not ignored.
NOT_EMULATED = {
    "FilterCriteria": "event filtering",
    "FunctionResponseTypes": "partial batch responses (ReportBatchItemFailures)",
    "TumblingWindowInSeconds": "tumbling windows",
}


class StreamMappingError(ValueError):
    """An event source mapping the local cloud cannot run as Lambda would."""


@dataclass(frozen=True)
class StreamMapping:
    """One AWS::Lambda::EventSourceMapping from a table's stream to a function, properties resolved."""

    logical_id: str
    function_logical_id: str
    stream_arn: str
    table_name: str
    starting_position: str  # TRIM_HORIZON | LATEST
    batch_size: int = DEFAULT_BATCH_SIZE
    bisect_batch_on_function_error: bool = False
    maximum_retry_attempts: int = UNTIL_EXPIRY
    on_failure_destination: str | None = None  # an SQS queue or SNS topic ARN
    enabled: bool = True


def mapping_from_template(
    logical_id: str, properties: dict[str, Any], *, function_logical_id: str, table_name: str
) -> StreamMapping:
    """The mapping as the local poller runs it; StreamMappingError for what it cannot run faithfully."""
    for name, what in NOT_EMULATED.items():
        if properties.get(name):
            raise StreamMappingError(f"{logical_id}: {name} ({what}) is not emulated by the local cloud")
    if int(properties.get("ParallelizationFactor", 1)) != 1:
        raise StreamMappingError(f"{logical_id}: a ParallelizationFactor other than 1 is not emulated")
    if int(properties.get("MaximumRecordAgeInSeconds", UNTIL_EXPIRY)) != UNTIL_EXPIRY:
        raise StreamMappingError(f"{logical_id}: MaximumRecordAgeInSeconds is not emulated")
    position = str(properties.get("StartingPosition", ""))
    if position not in ("TRIM_HORIZON", "LATEST"):
        raise StreamMappingError(f"{logical_id}: a stream's StartingPosition is TRIM_HORIZON or LATEST")
    destination = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    if destination and str(destination).split(":")[2:3] not in (["sqs"], ["sns"]):
        raise StreamMappingError(f"{logical_id}: only SQS and SNS on-failure destinations are emulated")
    return StreamMapping(
        logical_id=logical_id,
        function_logical_id=function_logical_id,
        stream_arn=str(properties["EventSourceArn"]),
        table_name=table_name,
        starting_position=position,
        batch_size=int(properties.get("BatchSize", DEFAULT_BATCH_SIZE)),
        bisect_batch_on_function_error=_true(properties.get("BisectBatchOnFunctionError", False)),
        maximum_retry_attempts=int(properties.get("MaximumRetryAttempts", UNTIL_EXPIRY)),
        on_failure_destination=str(destination) if destination else None,
        enabled=_true(properties.get("Enabled", True)),
    )


def _true(value: Any) -> bool:
    return str(value).lower() == "true"


@dataclass
class StreamDelivery:
    """One invocation with stream records: which records, and how it ended."""

    mapping: StreamMapping
    sequence_numbers: list[str]
    invocation: Invocation
    discarded: bool = False  # retries exhausted: the batch's description went to the destination


@dataclass
class _Shard:
    mapping: StreamMapping
    shard_id: str
    iterator: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)  # read, not yet handed over
    blocked_at: str | None = None  # the sequence number a batch keeps failing at (retries until expiry)
    read: set[str] = field(default_factory=set)  # the eventIDs read so far


class StreamPoller:
    """Reads the mappings' streams from the embedded AWS and invokes their functions.

    ``stamp``, when given, sets each record's ApproximateCreationDateTime as it is read
    (the virtual clock: a replay's records carry the replay's time, not the machine's);
    otherwise DynamoDB's own time stands. ``destinations`` sends an on-failure record to
    a destination ARN.
    """

    def __init__(
        self,
        mappings: list[StreamMapping],
        *,
        streams: Any,
        runtime: LambdaRuntime,
        region: str,
        destinations: Callable[[str, dict[str, Any]], None],
        now: Callable[[], datetime],
        stamp: bool = False,
        listener: Callable[[str, Any], None] | None = None,
    ):
        self.mappings = [mapping for mapping in mappings if mapping.enabled]
        self.streams = streams
        self.runtime = runtime
        self.region = region
        self.destinations = destinations
        self.now = now
        self.stamp = stamp
        self.listener = listener or (lambda kind, payload: None)
        self.deliveries: list[StreamDelivery] = []
        self._shards: dict[tuple[str, str], _Shard] = {}

    def start(self) -> None:
        """Place each mapping at its StartingPosition; call before anything writes to the tables."""
        for mapping in self.mappings:
            self._discover(mapping, mapping.starting_position)

    def _discover(self, mapping: StreamMapping, position: str) -> None:
        described = self.streams.describe_stream(StreamArn=mapping.stream_arn)["StreamDescription"]
        for shard in described.get("Shards", []):
            key = (mapping.logical_id, shard["ShardId"])
            if key in self._shards:
                continue
            iterator = self.streams.get_shard_iterator(
                StreamArn=mapping.stream_arn, ShardId=shard["ShardId"], ShardIteratorType=position
            )["ShardIterator"]
            self._shards[key] = _Shard(mapping, shard["ShardId"], iterator)

    def poll(self) -> list[StreamDelivery]:
        """One pass: read what is new on every shard and hand the pending records over."""
        delivered: list[StreamDelivery] = []
        for mapping in self.mappings:
            self._discover(mapping, "TRIM_HORIZON")  # shards opened since: read from their start
        for shard in list(self._shards.values()):
            self._read(shard)
            while shard.pending:
                batch = shard.pending[: shard.mapping.batch_size]
                if not self._hand_over(shard, batch, delivered):
                    break  # the shard waits at a batch that keeps failing
        return delivered

    def drain(self) -> list[StreamDelivery]:
        """Poll until a pass delivers nothing: every record written so far (and every record the
        functions wrote meanwhile) has been handed over, or waits behind a failing batch."""
        delivered: list[StreamDelivery] = []
        for _ in range(MAX_DRAIN_PASSES):
            handed = self.poll()
            delivered.extend(handed)
            if not any(d.invocation.ok or d.discarded for d in handed):
                return delivered
        self.listener(
            "warning",
            f"stream records kept coming after {MAX_DRAIN_PASSES} passes: does a function write to the "
            "table whose stream triggers it?",
        )
        return delivered

    def pending(self) -> int:
        """Records read but not yet handed over (behind a failing batch)."""
        return sum(len(shard.pending) for shard in self._shards.values())

    # -- reading ----------------------------------------------------------------------------

    def _read(self, shard: _Shard) -> None:
        while shard.iterator:
            page = self.streams.get_records(ShardIterator=shard.iterator, Limit=GET_RECORDS_LIMIT)
            shard.iterator = page.get("NextShardIterator")  # None once a closed shard is read to its end
            # A page of records read before is the end too: a stream whose iterator does not move
            # on (moto's numbering race, see modelwatch.local.moto_tuning) must not be read for ever.
            records = [record for record in page.get("Records", []) if record["eventID"] not in shard.read]
            if not records:
                return
            shard.read.update(record["eventID"] for record in records)
            shard.pending.extend(self._lambda_record(shard.mapping, record) for record in records)

    def _lambda_record(self, mapping: StreamMapping, record: dict[str, Any]) -> dict[str, Any]:
        """A GetRecords record as Lambda puts it in the event: the wire format of the images,
        the creation time in epoch seconds, and the stream's ARN."""
        change = dict(record["dynamodb"])
        created = self.now() if self.stamp else change.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            change["ApproximateCreationDateTime"] = float(int(created.timestamp()))
        for image in ("Keys", "NewImage", "OldImage"):
            if image in change:
                change[image] = {name: _wire(value) for name, value in change[image].items()}
        return {
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "eventVersion": record.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": self.region,
            "dynamodb": change,
            "eventSourceARN": mapping.stream_arn,
        }

    # -- handing over -----------------------------------------------------------------------

    def _hand_over(self, shard: _Shard, batch: list[dict[str, Any]], delivered: list[StreamDelivery]) -> bool:
        """Invoke with ``batch`` (the head of the shard's pending records) until it is delivered,
        split or discarded; False when the shard must wait (retries until expiry)."""
        mapping = shard.mapping
        attempts = 0
        while True:
            attempts += 1
            invocation = self.runtime.invoke(
                mapping.function_logical_id, {"Records": batch}, asynchronous=False
            )
            delivery = StreamDelivery(mapping, [r["dynamodb"]["SequenceNumber"] for r in batch], invocation)
            self.deliveries.append(delivery)
            delivered.append(delivery)
            label = f"{len(batch)} stream record(s) of {mapping.table_name}"
            self.listener("invocation", (label, invocation))
            if invocation.ok:
                del shard.pending[: len(batch)]
                shard.blocked_at = None
                return True
            if mapping.bisect_batch_on_function_error and len(batch) > 1:
                middle = (len(batch) + 1) // 2
                # The first half, once handed over, leaves the second at the head of pending.
                return self._hand_over(shard, batch[:middle], delivered) and self._hand_over(
                    shard, batch[middle:], delivered
                )
            if mapping.maximum_retry_attempts == UNTIL_EXPIRY:
                first = delivery.sequence_numbers[0]
                if shard.blocked_at != first:
                    shard.blocked_at = first
                    self.listener(
                        "warning",
                        f"{mapping.function_logical_id} keeps failing on stream records of "
                        f"{mapping.table_name} from sequence number {first}: with MaximumRetryAttempts -1 "
                        "the shard waits (in AWS until the records expire, 24 hours)",
                    )
                return False
            if attempts > mapping.maximum_retry_attempts:
                delivery.discarded = True
                self._send_to_on_failure(shard, batch, invocation, attempts)
                del shard.pending[: len(batch)]
                return True

    def _send_to_on_failure(
        self, shard: _Shard, batch: list[dict[str, Any]], invocation: Invocation, attempts: int
    ) -> None:
        mapping = shard.mapping
        if not mapping.on_failure_destination:
            return  # Lambda drops the records, as here
        function = self.runtime.functions[mapping.function_logical_id].spec
        arrivals = [_iso(r["dynamodb"].get("ApproximateCreationDateTime")) for r in batch]
        record = {  # what Lambda sends to a stream mapping's on-failure destination
            "requestContext": {
                "requestId": invocation.request_id,
                "functionArn": function.arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": self.now().astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": batch[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": batch[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": arrivals[0],
                "approximateArrivalOfLastRecord": arrivals[-1],
                "batchSize": len(batch),
                "streamArn": mapping.stream_arn,
            },
        }
        self.destinations(mapping.on_failure_destination, record)


def _iso(epoch_seconds: Any) -> str | None:
    if epoch_seconds is None:
        return None
    return datetime.fromtimestamp(float(epoch_seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wire(value: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as DynamoDB's JSON writes it (boto3 hands binary values over as bytes)."""
    wire: dict[str, Any] = {}
    for member, inner in value.items():
        if member == "B":
            wire[member] = base64.b64encode(inner).decode()
        elif member == "BS":
            wire[member] = [base64.b64encode(item).decode() for item in inner]
        elif member == "M":
            wire[member] = {name: _wire(item) for name, item in inner.items()}
        elif member == "L":
            wire[member] = [_wire(item) for item in inner]
        else:
            wire[member] = inner
    return wire


def destination_sender(sqs: Any, sns: Any) -> Callable[[str, dict[str, Any]], None]:
    """Sends an on-failure record to an SQS queue or SNS topic, by ARN."""

    def send(arn: str, record: dict[str, Any]) -> None:
        body = json.dumps(record, default=str)
        service = arn.split(":")[2]
        if service == "sqs":
            url = sqs.get_queue_url(QueueName=arn.split(":")[5], QueueOwnerAWSAccountId=arn.split(":")[4])
            sqs.send_message(QueueUrl=url["QueueUrl"], MessageBody=body)
        else:  # SNS: mapping_from_template allows no other service
            sns.publish(TopicArn=arn, Message=body)

    return send
