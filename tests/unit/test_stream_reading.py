"""The local cloud's stream reader ends at the end of a stream, even one whose iterator
does not move on.

moto numbered a stream record with the shard's record count and then appended it, in a
server that answers requests in threads: two writes at once could share a sequence number,
and GetRecords then returned the last of them again and again (its next iterator starts
after the number, which is that record's own index). The server now numbers records under
a lock (tests/integration/test_moto_server.py); the reader also stops at a page of records
it has read, so such a stream cannot hang a replay. Injected: a GetRecords stand-in
that answers as moto did, which a real server can no longer be made to do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelwatch.local.streams import StreamMapping, StreamPoller, _Shard


def record(event_id: str, sequence: int) -> dict[str, Any]:
    return {
        "eventID": event_id,
        "eventName": "INSERT",
        "dynamodb": {"Keys": {"record_id": {"S": event_id}}, "SequenceNumber": str(sequence)},
    }


class StuckStream:
    """GetRecords as moto answered after two writes got sequence number 2: records 0, 1, 2,
    then the second record numbered 2 for ever."""

    def __init__(self) -> None:
        self.calls = 0
        self.pages = [[record("a", 0), record("b", 1), record("c", 2)], [record("d", 2)]]

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.calls += 1
        assert self.calls < 100, "the reader kept reading a stream that does not move on"
        page = self.pages[min(self.calls - 1, len(self.pages) - 1)]
        return {"NextShardIterator": f"after-{page[-1]['dynamodb']['SequenceNumber']}", "Records": page}


def test_a_stream_whose_iterator_does_not_move_on_is_read_to_its_end_once_injected() -> None:
    mapping = StreamMapping("Labels", "LabelJoinFunction", "arn:stream", "actuals", "TRIM_HORIZON")
    stream = StuckStream()
    poller = StreamPoller(
        [mapping],
        streams=stream,
        runtime=None,  # type: ignore[arg-type] - nothing is handed over here
        region="us-east-1",
        destinations=lambda arn, message: None,
        now=lambda: datetime.now(UTC),
    )
    shard = _Shard(mapping, "shard-1", "trim-horizon")

    poller._read(shard)

    # Every record once, in order, and the read ended at the first page with nothing new
    assert [r["eventID"] for r in shard.pending] == ["a", "b", "c", "d"]
    assert stream.calls == 3
