"""Values a whole batch needs in sorted order, in memory up to a budget and on disk beyond it.

A batch read in chunks keeps, per row, what its rank statistics need: a binary model's
positive-class probability (ROC AUC, the estimated ROC AUC, prediction drift's KS test)
and a 64-bit hash of its id (duplicate ids, modelwatch.validation.SeenIds). Kept in
memory, that is 16 bytes a row: 256 MB at 16 million rows, more while runs are merged.
Here the values of the chunks stay in memory until they pass a budget; then they are
sorted and written as a *sorted run* (raw little-endian values, no header) to a
temporary directory (under /tmp, or the batch's workspace), and memory starts over. At
the end, the runs are read back a block at a time and merged (``SortedRuns.counts``),
so the merge holds a block of each run, whatever the batch's size.

A batch under the budget never touches the disk. The files go with ``close()``, with
the directory they are in (the batch monitor's workspace, removed on every path), or
when the object is collected.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np

# Bytes of values kept in memory before they are written as runs: ~1 million rows of
# float64 (a batch of up to ~1 million rows never touches the disk). Smaller, memory
# stays lower and the merge reads more runs (a 16-million-row batch writes 16 x 3).
SPILL_BUDGET_BYTES = 8 << 20
# Values read from all runs together per merge step (float64: 2 MB), shared among the
# runs. What the merge and its readers make of a step costs ~150 bytes a value (sort
# order, distinct values, counts per tag, cumulative sums): 1 << 20 peaked 160 MB above
# the chunk loop at the end of a 16-million-row batch.
MERGE_BLOCK_ROWS = 1 << 18
# Fewest values read from one run per merge step (32 kB): small reads cost more calls than bytes.
MIN_RUN_BLOCK_ROWS = 1 << 12
SPILL_PREFIX = "modelwatch-spill-"


class SpillDirectory:
    """A temporary directory made when a first run is written, removed by ``close()`` or
    when its owner is collected (a reused Lambda sandbox keeps /tmp)."""

    def __init__(self, parent: Path | None = None):
        self.parent = parent
        self.path: Path | None = None
        self._remove: weakref.finalize | None = None

    def file(self, name: str) -> Path:
        if self.path is None:
            if self.parent is not None:
                self.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX, dir=self.parent))
            self._remove = weakref.finalize(self, shutil.rmtree, self.path, True)
        return self.path / name

    def close(self) -> None:
        if self._remove is not None:
            self._remove()


class Run:
    """One sorted run of values: an array, or a file of the raw values."""

    def __init__(self, values: np.ndarray, path: Path | None = None):
        self.size = int(values.size)
        self.dtype = values.dtype
        self.path = path
        self.values: np.ndarray | None = None
        if path is None:
            self.values = values
        else:
            values.tofile(path)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Values ``start`` to ``stop`` (a copy from the file; never a memory map, whose
        pages would count in the process's memory while mapped)."""
        stop = min(stop, self.size)
        if self.values is not None:
            return self.values[start:stop]
        assert self.path is not None
        with self.path.open("rb") as file:
            file.seek(start * self.dtype.itemsize)
            return np.fromfile(file, dtype=self.dtype, count=max(0, stop - start))


def sorted_concatenation(parts: list[np.ndarray]) -> np.ndarray:
    """The parts in one sorted array, each part dropped from the list once copied."""
    total = np.empty(sum(part.size for part in parts), dtype=parts[0].dtype if parts else float)
    start = 0
    parts.reverse()
    while parts:
        part = parts.pop()
        total[start : start + part.size] = part
        start += part.size
    total.sort()
    return total


def merged_blocks(runs: list[tuple[int, Run]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The values of sorted ``runs`` (each with its tag) in ascending order (NaN last), as
    blocks of (values, their runs' tags); a value may repeat across two blocks.

    Each step reads the next block of any run whose block is used up; every value up to
    the smallest last value of the runs with unread values is then safe to emit (no
    unread value is below it), and is merged by one stable sort of the runs' pieces
    (sorted runs: numpy's timsort merges them in linear time).
    """
    if not runs:
        return
    block_rows = max(MIN_RUN_BLOCK_ROWS, MERGE_BLOCK_ROWS // len(runs))
    read = [0] * len(runs)  # values read from each run so far
    blocks = [np.empty(0)] * len(runs)
    while True:
        for index, (_, run) in enumerate(runs):
            if not blocks[index].size and read[index] < run.size:
                blocks[index] = run.read(read[index], read[index] + block_rows)
                read[index] += blocks[index].size
        unread = [blocks[index][-1] for index, (_, run) in enumerate(runs) if read[index] < run.size]
        # np.sort orders NaN last, as the runs do (min() would not).
        bound = np.sort(np.asarray(unread))[0] if unread else None
        values, tags = [], []
        for index, (tag, _) in enumerate(runs):
            block = blocks[index]
            take = block.size if bound is None else int(np.searchsorted(block, bound, side="right"))
            if take:
                values.append(block[:take])
                tags.append(np.full(take, tag, dtype=np.int8))
                blocks[index] = block[take:]
        if not values:
            return
        merged = np.concatenate(values)
        order = np.argsort(merged, kind="stable")
        yield merged[order], np.concatenate(tags)[order]


def distinct_counts(
    blocks: Iterator[tuple[np.ndarray, np.ndarray]], tag_count: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Ascending (values, tags) blocks as (distinct values, counts[value, tag]), each value
    in one block only: the last value of a block is held back until the next block shows
    whether it goes on (so a run of ties of any length costs one row)."""
    held: tuple[np.ndarray, np.ndarray] | None = None
    for values, tags in blocks:
        first = np.concatenate(([True], values[1:] != values[:-1]))
        distinct = values[first]
        group = np.cumsum(first) - 1
        counts = np.bincount(group * tag_count + tags, minlength=distinct.size * tag_count).reshape(
            distinct.size, tag_count
        )
        if held is not None:
            if distinct[0] == held[0][0]:
                counts[0] += held[1][0]
            else:
                distinct = np.concatenate((held[0], distinct))
                counts = np.concatenate((held[1], counts))
        if distinct.size > 1:
            yield distinct[:-1], counts[:-1]
        held = distinct[-1:], counts[-1:]
    if held is not None:
        yield held


class SortedRuns:
    """Float values added a chunk at a time, each with a tag (0 to ``tag_count`` - 1: which
    kind of row it belongs to), read back as one ascending sequence of distinct values
    with how many of each tag have it (``counts``)."""

    def __init__(self, tag_count: int, directory: Path | None = None, budget_bytes: int | None = None):
        self.tag_count = tag_count
        self.budget_bytes = SPILL_BUDGET_BYTES if budget_bytes is None else budget_bytes
        self.parts: list[list[np.ndarray]] = [[] for _ in range(tag_count)]
        self.buffered_bytes = 0
        self.runs: list[tuple[int, Run]] = []
        self.sizes = [0] * tag_count
        # Values that are not finite, by kind: -inf, inf, NaN (numpy sorts them first, then last).
        self.negative_infinite = self.positive_infinite = self.nan = 0
        self.spill = SpillDirectory(directory)

    @property
    def spilled(self) -> bool:
        return any(run.path is not None for _, run in self.runs)

    def add(self, tag: int, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=float)
        if not values.size:
            return
        finite = np.isfinite(values)
        if not finite.all():
            other = values[~finite]
            nan = int(np.isnan(other).sum())
            self.nan += nan
            self.positive_infinite += int((other > 0).sum())
            self.negative_infinite += other.size - nan - int((other > 0).sum())
        self.parts[tag].append(values)
        self.sizes[tag] += values.size
        self.buffered_bytes += values.nbytes
        if self.buffered_bytes > self.budget_bytes:
            self._write_runs()

    def _write_runs(self) -> None:
        for tag, parts in enumerate(self.parts):
            if parts:
                run = sorted_concatenation(parts)
                self.runs.append((tag, Run(run, self.spill.file(f"run-{len(self.runs)}"))))
        self.buffered_bytes = 0

    def counts(self, tags: tuple[int, ...] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The values of ``tags`` (every tag by default) merged: blocks of (distinct values,
        ascending across blocks, NaN last and each on its own; counts[value, tag] for every
        tag, 0 for tags not read). May be read any number of times."""
        # What is still in memory becomes runs in memory, sorted once.
        for tag, parts in enumerate(self.parts):
            if parts:
                self.runs.append((tag, Run(sorted_concatenation(parts))))
        self.buffered_bytes = 0
        chosen = [(tag, run) for tag, run in self.runs if tags is None or tag in tags]
        # yield from, not return: the generator keeps this object (and so its files) alive.
        yield from distinct_counts(merged_blocks(chosen), self.tag_count)

    def close(self) -> None:
        """Drop the values and remove the files."""
        self.runs = []
        self.parts = [[] for _ in range(self.tag_count)]
        self.spill.close()
