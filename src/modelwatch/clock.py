"""The processing time ("now") of the code the functions run.

In Lambda it is the wall clock. The local cloud runs the functions in its own process,
and a replay or the demo runs them on a virtual clock, its batches stamped in a virtual
past (modelwatch.local.backtest): the local runtime sets this clock to the cloud's
around each invocation (``running_on``), so a batch is processed at the replay's time, as
it would have been had it arrived then. On the wall clock a replayed batch looked
processed hours after its event time, and its report said its datapoints were outside
the alarms' window while the replay's own alarms evaluated them.

Only the processing time goes through here; records whose time orders things across
invocations (retrain decisions, promotions) keep the wall clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

_source: Callable[[], datetime] | None = None


def now() -> datetime:
    """The current time: the wall clock, unless the local runtime set another."""
    source = _source
    return source() if source is not None else datetime.now(UTC)


@contextlib.contextmanager
def running_on(source: Callable[[], datetime] | None) -> Iterator[None]:
    """``now()`` is ``source()`` inside (process-wide: the local runtime invokes one
    function at a time); None keeps the wall clock."""
    global _source
    saved = _source
    _source = source
    try:
        yield
    finally:
        _source = saved
