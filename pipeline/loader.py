"""Training-time reader of a published split: shuffled, split over ranks and workers, resumable.

One epoch is one deterministic stream of the split's rows, decided by
``(seed, epoch)`` alone:

* the shards in a seeded permutation, and inside each shard its rows in a
  permutation seeded by ``(seed, epoch, shard)``. That is a local shuffle,
  enough because publish already shuffled every record over the whole split
  (``pipeline.publish.split_and_shuffle``): a shard is a random sample;
* **ranks** cut the stream by position, ``interleave`` (position ``g`` goes to
  rank ``g % world_size``) or ``blocks`` (rank ``r`` reads the ``r``-th
  contiguous slice). With ``interleave`` the global batch of step ``t`` is the
  stream's ``t``-th slice whatever the world size; ``blocks`` reads only about
  ``1/world_size`` of the shards on each rank;
* **DataLoader workers** take whole batches of their rank's stream in turn
  (worker ``w``: batches ``w, w+W, ...``), the order in which the DataLoader
  hands batches out, so a loader yields its rank's stream unchanged for any
  number of workers.

So a position in a rank's stream (``samples_seen``) is the whole resume
state: it means the same samples for any worker count or batch size.
:class:`ShardLoader` is the DataLoader that counts it.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import posixpath
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from fsspec.core import url_to_fs
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.curriculum import Curriculum, assign_levels
from pipeline.dataset_files import DatasetFolder, concat_shards, decode, relative_path
from pipeline.errors import IntegrityError, UserError
from pipeline.fingerprint import digest
from pipeline.shard_format import MANIFEST, read_manifest

Partition = Literal["interleave", "blocks"]
Balance = Literal["pad", "drop", "none"]
STATE_FORMAT = "tinyforge.loader-state"
STATE_VERSION = 1
_CHUNK = 512  # positions planned and converted at a time: a worker busy with a big chunk starves the loader


@dataclass(frozen=True)
class Block:
    """A run of an epoch's stream: rows of one shard, in order (computed when the stream reaches them)."""

    shard: int  # position in the manifest's list
    rows: int
    order: Callable[[], np.ndarray]


@dataclass(frozen=True)
class ShardInfo:
    index: int  # position in the manifest's list: seeds the shard's row order, so it never depends on reading order
    path: str
    rows: int
    bytes: int
    sha256: str


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool, part: int = 0) -> np.ndarray:
    """Manifest indices of the shards in the epoch's reading order (of the epoch's ``part``-th part, for a
    curriculum whose epoch is read in parts)."""
    if not shuffle:
        return np.arange(num_shards)
    # The trailing tag keeps this seed apart from row_order's: SeedSequence pads entropy with zeros.
    return np.random.default_rng([seed, epoch, 0, *([part] if part else [])]).permutation(num_shards)


def row_order(rows: int, seed: int, epoch: int, shard_index: int, shuffle: bool, part: int = 0) -> np.ndarray:
    """Row indices of one shard in the epoch's order, seeded per shard so any consumer can compute it alone."""
    if not shuffle:
        return np.arange(rows)
    return np.random.default_rng([seed, epoch, 1, shard_index, *([part] if part else [])]).permutation(rows)


def epoch_length(rows: int, world_size: int, balance: Balance) -> int:
    """Positions in the epoch's stream once the ranks' shares are made equal.

    ``pad`` repeats the stream's first ``< world_size`` rows (as DistributedSampler
    does), ``drop`` leaves out its last ``< world_size`` rows, ``none`` keeps every
    row once and lets the ranks' shares differ by one.
    """
    if balance == "pad":
        return -(-rows // world_size) * world_size
    if balance == "drop":
        return rows // world_size * world_size
    return rows


def rank_length(length: int, rank: int, world_size: int) -> int:
    """Samples of a rank in an epoch stream of ``length`` positions (the same for both partitions)."""
    base, extra = divmod(length, world_size)
    return base + (rank < extra)


def rank_positions(p: np.ndarray, rank: int, world_size: int, length: int, partition: Partition) -> np.ndarray:
    """Epoch-stream positions of a rank's samples ``p`` (0 = the rank's first sample of the epoch)."""
    if partition == "interleave":
        return p * world_size + rank
    base, extra = divmod(length, world_size)
    return p + rank * base + min(rank, extra)


def worker_positions(total: int, start: int, batch_size: int, num_workers: int, worker: int,
                     chunk: int = _CHUNK) -> Iterator[np.ndarray]:
    """Rank positions one worker yields, in order, a chunk at a time.

    Batches are counted from ``start``, not from the epoch's beginning: a
    resumed loader hands out its first batch from worker 0 again.
    """
    step = batch_size * num_workers
    per_chunk = max(1, chunk // batch_size) * step
    within = np.arange(batch_size)
    for first in range(start + worker * batch_size, total, per_chunk):
        heads = np.arange(first, min(total, first + per_chunk), step)
        positions = (heads[:, None] + within).ravel()
        yield positions[positions < total]


def resolve_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world_size) as given, else torch.distributed's when initialised, else $RANK/$WORLD_SIZE, else (0, 1)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        default = (dist.get_rank(), dist.get_world_size())
    else:
        try:
            default = (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))
        except ValueError:
            raise UserError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}: "
                            "not integers") from None
    rank = default[0] if rank is None else rank
    world_size = default[1] if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"rank {rank} is not in a world of {world_size}")
    return rank, world_size


def _root_of(path: str) -> str:
    path = path.rstrip("/")
    return posixpath.dirname(path) if posixpath.basename(path) == MANIFEST else path


class ShardDataset(IterableDataset):
    """One split of a published dataset as a stream of dict samples for one rank.

    ``source`` is the dataset folder, its ``manifest.json``, or an fsspec URL of
    either (``s3://``, ``memory://``, ``file://``...; ``storage_options`` go to
    fsspec). Each shard's size, sha256 and row count are checked against the
    manifest before a sample of it is yielded, once per shard per process,
    on the very bytes that are then decoded.

    ``columns=None`` reads every column except nested structs (``sampling``),
    which a training step rarely needs and which cost the most to convert.
    ``batch_size`` is the unit in which DataLoader workers take turns; it must
    equal the loader's batch size for the loader to yield the rank's stream in
    order (:class:`ShardLoader` sets it).

    ``order`` is ``"shuffle"`` (every row once an epoch, in a seeded order) or
    a :class:`~pipeline.curriculum.Curriculum`: easy to hard by a numeric
    column, in levels staged over epochs (``pipeline.curriculum``); an
    epoch then holds the rows its stage names, and ``len()`` is the current
    epoch's.
    """

    def __init__(self, source: str | os.PathLike[str], split: str = "train", *, shuffle: bool = True, seed: int = 0,
                 columns: Sequence[str] | None = None, rank: int | None = None, world_size: int | None = None,
                 verify: bool = True, partition: Partition = "interleave", balance: Balance = "pad",
                 batch_size: int = 1, storage_options: dict[str, Any] | None = None,
                 order: Literal["shuffle"] | Curriculum = "shuffle") -> None:
        super().__init__()
        if partition not in ("interleave", "blocks"):
            raise UserError(f"partition must be 'interleave' or 'blocks', not {partition!r}")
        if balance not in ("pad", "drop", "none"):
            raise UserError(f"balance must be 'pad', 'drop' or 'none', not {balance!r}")
        if not isinstance(seed, int) or seed < 0:
            raise UserError(f"seed must be a non-negative integer, not {seed!r}")
        if order != "shuffle" and not isinstance(order, Curriculum):
            raise UserError(f"order must be 'shuffle' or a Curriculum, not {order!r}")
        self.curriculum = order if isinstance(order, Curriculum) else None
        self.source = os.fspath(source)
        self.fs, path = url_to_fs(self.source, **(storage_options or {}))
        self.root = _root_of(path)
        self.folder = DatasetFolder(self.fs, self.root, self.source)
        raw: list[bytes] = []

        def read() -> bytes:
            raw.append(self.folder.manifest(MANIFEST))
            return raw[-1]

        self.manifest = read_manifest(read, self.source)
        self.manifest_sha256 = hashlib.sha256(raw[-1]).hexdigest()  # what a mix build records of its sources
        meta = self.manifest["splits"].get(split)
        if meta is None:
            raise IntegrityError(f"{self.source}: no split {split!r} (has {', '.join(self.manifest['splits'])})")
        self.split = split
        self.shards = [ShardInfo(i, relative_path(s["path"], self.source), s["rows"], s["bytes"], s["sha256"])
                       for i, s in enumerate(meta["shards"])]
        self.rows = sum(s.rows for s in self.shards)
        self.fingerprint = digest({"split": split, "shards": [[s.path, s.rows, s.sha256] for s in self.shards]})
        self.shuffle, self.seed, self.verify = shuffle, seed, verify
        self.partition, self.balance = partition, balance
        self.rank, self.world_size = resolve_world(rank, world_size)
        self.batch_size = batch_size
        self.schema: pa.Schema = pa.schema([])  # the first shard's, as _resolve_columns reads it
        self.columns = self._resolve_columns(columns)
        self._epoch, self._start = 0, 0
        self._verified: set[str] = set()
        self._levels: list[np.ndarray] | None = None  # a curriculum's level of every row, by shard
        if self.curriculum is not None:
            self._shard_levels()  # a missing or non-numeric column is an error now, not in a worker

    # -- what an epoch is ---------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def start(self) -> int:
        """Samples at the beginning of this rank's epoch that iterating skips (set by load_state_dict)."""
        return self._start

    def set_epoch(self, epoch: int) -> None:
        """Like DistributedSampler.set_epoch; a new epoch starts from its beginning, the current one stays put."""
        if not isinstance(epoch, int) or epoch < 0:
            raise UserError(f"epoch must be a non-negative integer, not {epoch!r}")
        if epoch != self._epoch:
            self._epoch, self._start = epoch, 0

    def __len__(self) -> int:
        """This rank's samples in a whole epoch (equal on every rank unless balance='none')."""
        return self._rank_length(self._epoch)

    def _rank_length(self, epoch: int, rank: int | None = None) -> int:
        length = epoch_length(self.epoch_rows(epoch), self.world_size, self.balance)
        return rank_length(length, self.rank if rank is None else rank, self.world_size)

    def epoch_rows(self, epoch: int) -> int:
        """Rows in the epoch's stream before balancing: the split's, or what a curriculum's stage holds."""
        if self.curriculum is None:
            return self.rows
        counts = np.bincount(np.concatenate(self._shard_levels() or [np.empty(0, dtype=np.int32)]),
                             minlength=self.curriculum.levels)
        return int(sum(counts[list(held)].sum() for held in self.curriculum.parts(epoch)))

    # -- what an epoch reads, in order ------------------------------------------------------------------

    def _blocks(self, epoch: int) -> list[Block]:
        if self.curriculum is None:
            return [Block(int(i), self.shards[i].rows,
                          functools.partial(row_order, self.shards[i].rows, self.seed, epoch, self.shards[i].index,
                                            self.shuffle))
                    for i in shard_order(len(self.shards), self.seed, epoch, self.shuffle)]
        levels, blocks = self._shard_levels(), []
        for part, held in enumerate(self.curriculum.parts(epoch)):
            for i in shard_order(len(self.shards), self.seed, epoch, self.shuffle, part):
                shard = self.shards[i]
                rows = row_order(shard.rows, self.seed, epoch, shard.index, self.shuffle, part)
                rows = rows[np.isin(levels[i][rows], held)]
                blocks.append(Block(int(i), len(rows), functools.partial(np.asarray, rows)))
        return blocks

    def _shard_levels(self) -> list[np.ndarray]:
        """Every row's curriculum level, by shard: the column read from every shard (one column: cheap)."""
        if self._levels is None:
            assert self.curriculum is not None
            column = self.curriculum.column
            values = [self._column(shard, column) for shard in self.shards]
            flat = np.concatenate(values) if values else np.empty(0)
            level = assign_levels(flat, self.curriculum.levels, self.seed, self.curriculum.descending)
            self._levels = np.split(level, np.cumsum([len(v) for v in values])[:-1]) if values else []
        return self._levels

    def _column(self, shard: ShardInfo, column: str) -> np.ndarray:
        url = self._url(shard.path)
        if column not in self.schema.names:
            raise UserError(f"{self.source}: split {self.split!r} has no column {column!r} to order a "
                            f"curriculum by (has {', '.join(self.schema.names)})")
        buffer = self.folder.read(shard.path, shard.bytes, shard.sha256 if self.verify else None)
        values = decode(buffer, url, shard.rows, [column]).column(0)
        kind = values.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
            raise UserError(f"{self.source}: a curriculum orders by a numeric column; {column!r} is {kind}")
        if values.null_count:
            raise UserError(f"{self.source}: {column!r} is null in {values.null_count} rows of {shard.path}; a "
                            "curriculum needs a value for every row (a sampled difficulty score leaves nulls)")
        return values.to_numpy(zero_copy_only=False).astype(np.float64)

    # -- resume ---------------------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        """What must match for a saved position to mean the same samples (not the worker count or batch size)."""
        identity = {"dataset": self.fingerprint, "split": self.split, "seed": self.seed, "shuffle": self.shuffle,
                    "world_size": self.world_size, "partition": self.partition, "balance": self.balance}
        if self.curriculum is not None:  # absent for shuffled epochs: their states from before still load
            identity["order"] = self.curriculum.describe()
        return identity

    def state_dict(self, samples_seen: int) -> dict[str, Any]:
        """The position after ``samples_seen`` samples of this rank's current epoch, counted from its beginning.

        Only the consumer knows that count: the samples DataLoader workers
        yield never pass through this object. :meth:`ShardLoader.state_dict`
        counts it for you.
        """
        if not 0 <= samples_seen <= len(self):
            raise UserError(f"samples_seen {samples_seen} is outside this rank's epoch of {len(self)} samples")
        return {"format": STATE_FORMAT, "version": STATE_VERSION, **self._identity(),
                "build_id": self.manifest.get("build_id"), "epoch": self._epoch, "samples_seen": samples_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at a saved position: the next iteration yields the rest of that epoch.

        A state saved on any rank fits every rank (ranks step in lockstep);
        one from another dataset, seed, shuffle, world size, partition or
        balance is refused, since its position would name other samples.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise UserError("not a ShardDataset state (no 'format': 'tinyforge.loader-state')")
        if state.get("version") != STATE_VERSION:
            raise UserError(f"loader state version {state.get('version')!r}; this tinyforge reads {STATE_VERSION}")
        identity = self._identity()
        for key in [*identity, *(["order"] if "order" not in identity else [])]:  # a curriculum's, or none
            mine = identity.get(key)
            if state.get(key) != mine:
                what = (f"build {state.get('build_id')!r} vs {self.manifest.get('build_id')!r}, shards differ"
                        if key == "dataset" else f"{state.get(key)!r} vs {mine!r} here")
                raise UserError(f"cannot resume from a loader state of a different {key} ({what})")
        epoch, seen = state.get("epoch"), state.get("samples_seen")
        if not (isinstance(epoch, int) and epoch >= 0 and isinstance(seen, int)
                and 0 <= seen <= self._rank_length(epoch, rank=0)):
            raise UserError(f"loader state has an impossible position: epoch {epoch!r}, samples_seen {seen!r}")
        # With balance='none' rank 0 may have one sample more than this rank: its end is this rank's end.
        self._epoch, self._start = epoch, min(seen, self._rank_length(epoch))

    # -- reading --------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # Not a generator function: the epoch and start are taken now, when a DataLoader
        # creates its iterator, not whenever the first sample happens to be asked for.
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # Workers already are the parallelism: pyarrow's own threads would only oversubscribe the cores.
        return self._samples(self._epoch, self._start, worker, workers, threads=info is None)

    def _samples(self, epoch: int, start: int, worker: int, workers: int,
                 threads: bool = True) -> Iterator[dict[str, Any]]:
        blocks = self._blocks(epoch)
        offsets = np.concatenate([[0], np.cumsum([b.rows for b in blocks], dtype=np.int64)])
        rows_in_epoch = int(offsets[-1])
        length = epoch_length(rows_in_epoch, self.world_size, self.balance)
        total = rank_length(length, self.rank, self.world_size)
        slot, read, table, rows = -1, -1, pa.table({}), np.empty(0, dtype=np.int64)
        for p in worker_positions(total, start, self.batch_size, workers, worker):
            g = rank_positions(p, self.rank, self.world_size, length, self.partition) % rows_in_epoch
            slots = np.searchsorted(offsets, g, side="right") - 1
            cuts = np.flatnonzero(np.diff(slots)) + 1
            for a, b in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(g)]]), strict=True):
                if slots[a] != slot:  # one block at a time; the stream visits each once (pad: twice)
                    slot = int(slots[a])
                    block = blocks[slot]
                    if block.shard != read:  # a curriculum's next part may begin with the shard just read
                        read, table = block.shard, self._read(self.shards[block.shard], threads)
                    rows = block.order()
                yield from table.take(pa.array(rows[g[a:b] - offsets[slot]])).to_pylist()

    def read_table(self) -> pa.Table:
        """The whole split (its ``columns``), every shard checked against the manifest first, in the
        manifest's order: for a consumer that wants the table, not a stream (a mix build)."""
        tables = [self._read(shard) for shard in self.shards]
        if not tables:
            return pa.table({c: pa.array([], pa.null()) for c in self.columns})
        return concat_shards(tables, f"{self.source}: split {self.split!r}")

    def _url(self, rel: str) -> str:
        return self.folder.url(rel)

    def _read(self, shard: ShardInfo, threads: bool = True) -> pa.Table:
        """The shard's columns, its bytes checked against the manifest first (its size always; its sha256
        once per process, unless ``verify=False``), then decoded within bounds: what was checked is what
        is read."""
        check = self.verify and shard.path not in self._verified
        buffer = self.folder.read(shard.path, shard.bytes, shard.sha256 if check else None)
        table = decode(buffer, self._url(shard.path), shard.rows, self.columns, threads)
        if check:
            self._verified.add(shard.path)
        return table

    def _resolve_columns(self, columns: Sequence[str] | None) -> list[str]:
        """The columns to read, checked against the first shard's schema now rather than mid-epoch."""
        if isinstance(columns, str):
            raise UserError(f"columns must be a list of names, not the string {columns!r}")
        if not self.shards:
            return list(columns or [])
        schema = self.schema = self.folder.schema(self.shards[0].path)
        if columns is None:
            return [f.name for f in schema if not pa.types.is_struct(f.type)]
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise UserError(f"{self.source}: split {self.split!r} has no column {', '.join(unknown)} "
                            f"(has {', '.join(schema.names)})")
        return list(columns)


def pad_ids(seqs: Sequence[Sequence[int] | None], pad_id: int = 0,
            max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded LongTensor [batch, longest] of token ids and its attention mask (1 = a real token)."""
    seqs = [list(s or ())[:max_length] for s in seqs]
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    mask = np.arange(int(lengths.max(initial=0))) < lengths[:, None]
    ids = np.full(mask.shape, pad_id, dtype=np.int64)
    ids[mask] = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))


def collate(samples: Sequence[dict[str, Any]], *, pad_id: int = 0, max_length: int | None = None) -> dict[str, Any]:
    """A batch as one dict of columns: ``input_ids`` padded (plus ``attention_mask``), every other column a list.

    Numbers stay lists too: a DataLoader worker hands each tensor to the
    main process through its own shared-memory segment (about 0.7 ms each,
    benchmarks/loader.py), dearer than the list for a batch of scalars;
    ``torch.tensor(batch[key])`` in the training step is cheap.
    ``functools.partial(collate, pad_id=...)`` sets the padding token.
    """
    out: dict[str, Any] = {}
    for key in samples[0] if samples else ():
        values = [s[key] for s in samples]
        if key == "input_ids":
            out["input_ids"], out["attention_mask"] = pad_ids(values, pad_id, max_length)
        else:
            out[key] = values
    return out


def _init_worker(user_init: Any, worker_id: int) -> None:
    # A forked worker inherits the at-exit callbacks of the parent's service threads but not
    # the threads: Prefect's log and event queues register one, and draining a queue whose
    # thread does not exist fails, so the worker would exit with code 1 after its last batch
    # (a trainer started from a Prefect flow, or any test beside a Prefect server). The worker
    # has none of those threads to drain.
    threading._threading_atexits.clear()  # type: ignore[attr-defined]
    if user_init is not None:
        user_init(worker_id)


class ShardLoader(DataLoader):
    """A DataLoader over a :class:`ShardDataset` that counts what it yielded, so it can save and resume.

    Yields this rank's stream in order for any ``num_workers``. ``state_dict()``
    after ``k`` batches is the position ``start + k * batch_size``; a fresh
    loader that loads it yields exactly the batches the old one had not, with
    any worker count or batch size. Not supported: ``persistent_workers``
    (live workers would never see ``set_epoch`` or ``load_state_dict``) and
    ``in_order=False`` (batches would leave in a racy order).
    """

    def __init__(self, dataset: ShardDataset, batch_size: int | None = 1, *, collate_fn: Any = None,
                 **kwargs: Any) -> None:
        if not isinstance(dataset, ShardDataset):
            raise TypeError(f"ShardLoader reads a ShardDataset, not {type(dataset).__name__}")
        if kwargs.get("persistent_workers"):
            raise UserError("ShardLoader does not support persistent_workers: live workers would keep the old "
                            "epoch and position; workers are started anew for each epoch")
        if kwargs.get("in_order", True) is False:
            raise UserError("ShardLoader needs in_order=True: the resume position counts batches in order")
        dataset.batch_size = batch_size or 1
        if collate_fn is None and batch_size is not None:
            collate_fn = collate
        kwargs["worker_init_fn"] = functools.partial(_init_worker, kwargs.get("worker_init_fn"))
        super().__init__(dataset, batch_size=batch_size, collate_fn=collate_fn, **kwargs)
        self._progress = [dataset.epoch, dataset.start, 0]  # of the latest iterator: epoch, start, batches yielded

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        inner = super().__iter__()  # workers get the dataset as it is now
        self._progress = [self.dataset.epoch, self.dataset.start, 0]
        return self._counted(inner, self._progress)

    @staticmethod
    def _counted(inner: Iterator[Any], progress: list[int]) -> Iterator[Any]:
        for batch in inner:
            progress[2] += 1  # counted once handed out: a state saved while training on it skips it
            yield batch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.dataset.epoch:  # the same epoch again keeps its count, as the dataset keeps its position
            self._progress = [epoch, 0, 0]
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The dataset's state after the batches this loader has handed out in the current epoch."""
        ds: ShardDataset = self.dataset  # type: ignore[assignment]
        epoch, start, batches = self._progress
        if (epoch, start) != (ds.epoch, ds.start):  # the epoch or position moved since: nothing of it read yet
            return ds.state_dict(ds.start)
        return ds.state_dict(min(start + batches * (self.batch_size or 1), len(ds)))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
        self._progress = [self.dataset.epoch, self.dataset.start, 0]
