"""modelwatch.read_ahead: the chunk pipeline's second thread gives what a plain loop gives,
in order, fails where the loop fails, holds at most a few chunks, and leaves no thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from modelwatch.read_ahead import read_ahead

pytestmark = pytest.mark.unit


class Source:
    """A generator's record: what it made, in which thread, and whether it was closed."""

    def __init__(self, count: int, fail_at: int | None = None):
        self.count = count
        self.fail_at = fail_at
        self.made: list[int] = []
        self.threads: set[str] = set()
        self.closed_in: str | None = None

    def __iter__(self) -> Iterator[int]:
        try:
            for value in range(self.count):
                self.threads.add(threading.current_thread().name)
                if value == self.fail_at:
                    raise ValueError(f"bad chunk {value}")
                self.made.append(value)
                yield value
        finally:
            self.closed_in = threading.current_thread().name


def no_read_ahead_thread() -> bool:
    return not any(thread.name == "modelwatch-read-ahead" for thread in threading.enumerate())


def test_values_come_in_order_from_another_thread():
    source = Source(50)
    assert list(read_ahead(iter(source))) == list(range(50))
    assert source.threads == {"modelwatch-read-ahead"}
    assert source.closed_in == "modelwatch-read-ahead"
    assert no_read_ahead_thread()


def test_an_error_comes_after_the_values_before_it():
    source = Source(10, fail_at=4)
    seen = []
    with pytest.raises(ValueError, match="bad chunk 4"):
        for value in read_ahead(iter(source)):
            seen.append(value)
    assert seen == [0, 1, 2, 3]
    assert no_read_ahead_thread()


def test_the_thread_stays_at_most_depth_values_ahead():
    source = Source(100)
    ahead = []
    values = read_ahead(iter(source), depth=2)
    for value in values:
        # Give the producer time to run as far ahead as it may.
        threading.Event().wait(0.01)
        ahead.append(len(source.made) - (value + 1))
    # one in the queue's two places, one more made and waiting to be put
    assert max(ahead) <= 3
    assert max(ahead) >= 1  # it did read ahead


def test_stopping_early_stops_and_closes_the_source_in_its_thread():
    source = Source(1_000)
    values = read_ahead(iter(source))
    for value in values:
        if value == 3:
            break
    values.close()  # what the monitor's contextlib.closing does
    assert source.closed_in == "modelwatch-read-ahead"
    assert len(source.made) <= 7  # it did not read the rest of the file
    assert no_read_ahead_thread()


def test_an_error_in_the_caller_stops_the_thread():
    source = Source(1_000)
    with pytest.raises(RuntimeError), contextlib.closing(read_ahead(iter(source))) as values:
        for value in values:
            if value == 2:
                raise RuntimeError("the model failed")
    assert source.closed_in is not None and len(source.made) < 1_000
    assert no_read_ahead_thread()
