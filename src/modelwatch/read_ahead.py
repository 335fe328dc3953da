"""An iterator run a step ahead in a background thread, so the next chunk of a batch is
read, validated and matched with its actuals while the model scores this one.

The heavy parts on either side release the GIL (pandas' tokenizer, the trees' OpenMP
loops, zlib, the sockets of a DynamoDB request), so the two threads overlap on Lambda's
second vCPU (1.7 vCPUs at 3,008 MB) and hide a DynamoDB round trip behind the model.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def read_ahead(items: Iterator[T], depth: int = 1, name: str = "modelwatch-read-ahead") -> Iterator[T]:
    """``items``' values in order, produced in a thread at most ``depth`` values ahead of
    the caller (so at most ``depth`` + 2 are alive: one being made, ``depth`` waiting,
    one in use).

    An exception raised by ``items`` is raised here, after the values that came before
    it, as it would be without the thread. When the caller stops early (``break``, its
    own exception, ``close()``), the thread stops at its next value, closes ``items`` in
    its own thread (so the files it holds are closed) and is joined before this returns.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(value: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(value, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for value in items:
                if not offer(value):
                    break
            else:
                offer(_DONE)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            offer(_Failed(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()

    def consume() -> Iterator[T]:
        try:
            while True:
                value = handoff.get()
                if value is _DONE:
                    return
                if isinstance(value, _Failed):
                    raise value.error
                yield value  # type: ignore[misc]
        finally:
            stop.set()
            worker.join()

    return consume()
