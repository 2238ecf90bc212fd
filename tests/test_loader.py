"""ShardDataset / ShardLoader: epoch order, rank and worker split, exact resume, checksums, other readers agree."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.errors import IntegrityError, UserError
from pipeline.fingerprint import file_sha256
from pipeline.loader import ShardDataset, ShardLoader, collate
from pipeline.publish import publish_dataset
from pipeline.publish import PublishConfig
from pipeline.records import make_id, rejected_frame
from pipeline.report import render_card
from pipeline.schema import load_schema

SCHEMA = load_schema("tinystories.v2")
SIZES = [50, 7, 33, 1, 61, 20, 35]  # train shards of uneven sizes: batches and workers straddle their edges
ROWS = sum(SIZES)
WORKERS_3 = pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker")  # on 2-core machines


def story_record(i: int) -> dict[str, Any]:
    story = f"Story {i}. Lily found a {'blue' if i % 2 else 'green'} kite and ran up the hill. " * (1 + i % 3)
    return {
        "id": make_id(story), "build_id": "loader-test", "story": story, "summary": None if i % 2 else "A kite.",
        "words": ["run", "kite", "blue"], "features": ["Twist"] if i % 4 == 0 else [],
        "prompt": "Write a story.", "prompt_template_id": "tinystories.story@test", "summary_template_id": None,
        "generator_model": "llamacpp/test",
        "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 10, "repeat_penalty": 1.1, "stop": [],
                     "seed": i, "sample_index": 0},
        "parent_id": None, "verification": None, "dedup_cluster": make_id(story), "num_words": 15,
        "num_tokens": 20 + i, "finish_reason": "stop", "loss_trajectory": [3.0, 2.5, 2.0] if i % 5 else None,
        "learning_percentage": 0.5, "difficulty": (i % 10) / 10, "s2l_cluster": i % 3,
        "s2l_selected": i % 3 == 0, "ifd": None, "ic_ifd": None,
    }


def token_ids(record_id: str) -> list[int]:
    """Made-up pre-tokenized text of 2..16 ids, computable from the id alone."""
    return [ord(c) for c in record_id[: 2 + int(record_id, 16) % 15]]


def reshard(out: Path, split: str, sizes: list[int]) -> None:
    """Re-cut a published split into shards of the given sizes with an input_ids column, manifest fixed to match."""
    manifest = json.loads((out / "manifest.json").read_text())
    meta = manifest["splits"][split]
    table = pa.concat_tables([pq.read_table(out / s["path"]) for s in meta["shards"]])
    assert table.num_rows == sum(sizes)
    for s in meta["shards"]:
        (out / s["path"]).unlink()
    table = table.append_column("input_ids", pa.array([token_ids(i) for i in table["id"].to_pylist()],
                                                      pa.list_(pa.int32())))
    shards, at = [], 0
    for k, n in enumerate(sizes):
        rel = f"data/{split}-{k:05d}-of-{len(sizes):05d}.parquet"
        piece = table.slice(at, n)
        at += n
        pq.write_table(piece, out / rel, compression="zstd", row_group_size=8)
        shards.append({"path": rel, "rows": n, "bytes": (out / rel).stat().st_size,
                       "sha256": file_sha256(out / rel), "num_tokens": sum(piece["num_tokens"].to_pylist())})
    meta["shards"] = shards
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


def publish(out: Path, n: int, seed: int = 3) -> Path:
    publish_dataset(
        [story_record(i) for i in range(n)], rejected_frame([]), out_dir=out, schema=SCHEMA,
        cfg=PublishConfig(shard_max_rows=40, row_group_rows=8, validation_fraction=0.1), seed=seed,
        info={"build_id": f"loader-test-{seed}", "recipe": {"name": "t"}},
        card=lambda m: render_card(m, title="t", description="test", fields={}), report=lambda m: "# report\n",
        subsets={"s2l": "s2l_selected"},
    )
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only for the tests: copy it before changing a byte."""
    out = publish(tmp_path_factory.mktemp("loader") / "dataset", n=230)
    reshard(out, "train", SIZES)
    return out


def train_files(out: Path) -> list[Path]:
    return [out / s["path"] for s in json.loads((out / "manifest.json").read_text())["splits"]["train"]["shards"]]


def manifest_order(out: Path) -> list[str]:
    return pl.read_parquet(train_files(out))["id"].to_list()


def ids(samples: Any) -> list[str]:
    return [s["id"] for s in samples]


def loader_ids(loader: ShardLoader) -> list[str]:
    return [i for batch in loader for i in batch["id"]]


# -- resume ----------------------------------------------------------------------------------------------


@WORKERS_3
@pytest.mark.parametrize("workers_after,batch_after", [(2, 8), (0, 8), (3, 5)])
def test_resume_mid_epoch_with_two_workers_is_exact(dataset: Path, workers_after: int, batch_after: int) -> None:
    """Stop after N batches of a 2-worker loader, resume in a fresh one: the rest of the same epoch, in order."""
    # 13 batches: worker 0 handed out 7, worker 1 six. Seed 5, epoch 1 reads shards of 61, 33, 50... rows,
    # so the 104 rows seen cross two shard edges and the resume point lies inside the third shard.
    B, N = 8, 13
    def run(epoch: int) -> list[str]:
        loader = ShardLoader(ShardDataset(dataset, seed=5), batch_size=B, num_workers=2)
        loader.set_epoch(epoch)
        return loader_ids(loader)

    full = run(1)
    assert sorted(full) == sorted(manifest_order(dataset)) and len(set(full)) == ROWS

    loader = ShardLoader(ShardDataset(dataset, seed=5), batch_size=B, num_workers=2)
    loader.set_epoch(1)
    head: list[str] = []
    for k, batch in enumerate(loader):
        head += batch["id"]
        if k + 1 == N:
            state = json.loads(json.dumps(loader.state_dict()))  # as it would go through a checkpoint
            break
    assert state["epoch"] == 1 and state["samples_seen"] == N * B

    fresh = ShardLoader(ShardDataset(dataset, seed=5), batch_size=batch_after, num_workers=workers_after)
    fresh.load_state_dict(state)
    fresh.set_epoch(state["epoch"])  # the usual loop calls it again; the same epoch keeps the position
    rest = loader_ids(fresh)
    assert head == full[: N * B] and rest == full[N * B:]
    assert not set(head) & set(rest) and len(head) + len(rest) == ROWS
    assert fresh.state_dict()["samples_seen"] == ROWS  # the epoch is done

    fresh.set_epoch(2)  # the next epoch starts from its beginning, as an uninterrupted run's would
    assert fresh.state_dict()["samples_seen"] == 0
    assert loader_ids(fresh) == run(2)


def test_loader_state_counts_from_the_resume_point(dataset: Path) -> None:
    ds = ShardDataset(dataset, seed=1)
    ds.load_state_dict(ds.state_dict(samples_seen=100))
    loader = ShardLoader(ds, batch_size=16, num_workers=2)
    it = iter(loader)
    next(it), next(it)
    assert loader.state_dict()["samples_seen"] == 132
    assert sum(len(b["id"]) for b in it) == ROWS - 132
    assert loader.state_dict()["samples_seen"] == ROWS
    loader.set_epoch(0)  # the same epoch: still done
    assert loader.state_dict()["samples_seen"] == ROWS
    # Iterating the same epoch again replays it from the loaded position (set_epoch moves on).
    assert len(loader_ids(loader)) == ROWS - 100


def test_state_from_another_run_is_refused(dataset: Path, tmp_path: Path) -> None:
    state = ShardDataset(dataset, seed=1, rank=0, world_size=2).state_dict(samples_seen=10)
    ShardDataset(dataset, seed=1, rank=1, world_size=2).load_state_dict(state)  # any rank's state fits every rank
    with pytest.raises(UserError, match="different seed"):
        ShardDataset(dataset, seed=2, rank=0, world_size=2).load_state_dict(state)
    with pytest.raises(UserError, match="different world_size"):
        ShardDataset(dataset, seed=1, rank=0, world_size=1).load_state_dict(state)
    with pytest.raises(UserError, match="different partition"):
        ShardDataset(dataset, seed=1, rank=0, world_size=2, partition="blocks").load_state_dict(state)
    other = publish(tmp_path / "other", n=230, seed=4)  # same records, another shuffle: other shards
    with pytest.raises(UserError, match="different dataset .*loader-test-4"):
        ShardDataset(other, seed=1, rank=0, world_size=2).load_state_dict(state)
    with pytest.raises(UserError, match="impossible position"):
        ShardDataset(dataset, seed=1, rank=0, world_size=2).load_state_dict(state | {"samples_seen": 10**6})
    with pytest.raises(UserError, match="not a ShardDataset state"):
        ShardDataset(dataset).load_state_dict({"epoch": 0})
    with pytest.raises(UserError, match="outside"):
        ShardDataset(dataset).state_dict(samples_seen=ROWS + 1)


def test_unsupported_loader_settings_are_refused(dataset: Path) -> None:
    with pytest.raises(UserError, match="persistent_workers"):
        ShardLoader(ShardDataset(dataset), batch_size=4, num_workers=2, persistent_workers=True)
    with pytest.raises(UserError, match="in_order"):
        ShardLoader(ShardDataset(dataset), batch_size=4, num_workers=2, in_order=False)


# -- ranks and workers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("partition", ["interleave", "blocks"])
def test_ranks_and_workers_partition_the_split(dataset: Path, partition: str) -> None:
    def rank_stream(rank: int) -> list[str]:
        ds = ShardDataset(dataset, seed=9, rank=rank, world_size=2, partition=partition, balance="none")
        out = loader_ids(ShardLoader(ds, batch_size=4, num_workers=2))
        assert len(out) == len(ds)
        return out

    r0, r1 = rank_stream(0), rank_stream(1)
    assert not set(r0) & set(r1)
    assert sorted(r0 + r1) == sorted(manifest_order(dataset)) and len(r0 + r1) == ROWS
    single = ids(ShardDataset(dataset, seed=9, rank=0, world_size=1))
    if partition == "interleave":  # the global batch at step t is the t-th slice of one world-size-free stream
        assert [x for pair in zip(r0, r1) for x in pair] + r0[len(r1):] == single
    else:
        assert r0 + r1 == single


def _ddp_rank(rank: int, init: str, source: str, results: str) -> None:
    import datetime

    import torch.distributed as dist

    # A rank left without a batch would block in all_reduce: the timeout turns that hang into a failure.
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=30))
    try:
        ds = ShardDataset(source, seed=3)  # rank and world size from torch.distributed
        steps, seen = 0, []
        for batch in ShardLoader(ds, batch_size=8):
            flag = torch.ones(1)
            dist.all_reduce(flag)  # what DDP's gradient sync does every step
            assert flag.item() == 2
            steps += 1
            seen += batch["id"]
        gathered: list[Any] = [None, None]
        dist.all_gather_object(gathered, {"rank": ds.rank, "world": ds.world_size, "steps": steps, "ids": seen})
        if rank == 0:
            Path(results).write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_from_torch_distributed_step_in_lockstep(dataset: Path, tmp_path: Path) -> None:
    """Two real gloo ranks: defaults come from torch.distributed, padded streams give both the same steps."""
    results = tmp_path / "ranks.json"
    torch.multiprocessing.start_processes(_ddp_rank, args=(f"file://{tmp_path / 'store'}", str(dataset), str(results)),
                                          nprocs=2, start_method="spawn")
    r0, r1 = json.loads(results.read_text())
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    assert r0["steps"] == r1["steps"] == 13 and len(r0["ids"]) == len(r1["ids"]) == 104  # 207 rows padded to 208
    assert set(r0["ids"]) | set(r1["ids"]) == set(manifest_order(dataset))


def test_balance_pad_and_drop_give_every_rank_the_same_length(dataset: Path) -> None:
    world = 4  # 207 rows: 3 left over
    def streams(balance: str) -> list[list[str]]:
        return [ids(ShardDataset(dataset, seed=2, rank=r, world_size=world, balance=balance)) for r in range(world)]

    padded = streams("pad")
    assert {len(s) for s in padded} == {52}
    flat = [x for s in padded for x in s]
    assert set(flat) == set(manifest_order(dataset)) and len(flat) - len(set(flat)) == 1
    dropped = streams("drop")
    assert {len(s) for s in dropped} == {51}
    flat = [x for s in dropped for x in s]
    assert len(set(flat)) == len(flat) == 204
    assert [len(ShardDataset(dataset, rank=r, world_size=world, balance="none")) for r in range(world)] == [52] * 3 + [51]


def test_rank_and_world_size_from_the_environment(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    ds = ShardDataset(dataset)
    assert (ds.rank, ds.world_size, len(ds)) == (2, 3, 69)
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(UserError, match="rank 3 is not in a world of 3"):
        ShardDataset(dataset)


# -- order -----------------------------------------------------------------------------------------------


@WORKERS_3
def test_order_depends_on_seed_and_epoch_only(dataset: Path) -> None:
    def order(seed: int, epoch: int) -> list[str]:
        ds = ShardDataset(dataset, seed=seed)
        ds.set_epoch(epoch)
        return ids(ds)

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and sorted(order(0, 0)) == sorted(order(0, 1))
    assert order(0, 1) != order(1, 0)  # seed and epoch are not simply added
    assert ids(ShardDataset(dataset, shuffle=False)) == manifest_order(dataset)
    # Workers change nothing: a 3-worker loader yields the single-process stream.
    assert loader_ids(ShardLoader(ShardDataset(dataset, seed=0), batch_size=5, num_workers=3)) == order(0, 0)


def test_subset_split_yields_its_rows(dataset: Path) -> None:
    selected = ids(ShardDataset(dataset, "s2l", shuffle=False))
    assert selected and set(selected) <= set(manifest_order(dataset))
    assert all(s["s2l_selected"] for s in ShardDataset(dataset, "s2l", columns=["s2l_selected"]))
    with pytest.raises(IntegrityError, match="no split 'test'"):
        ShardDataset(dataset, "test")


# -- checksums and storage -------------------------------------------------------------------------------


def test_a_changed_shard_is_refused_before_any_of_its_rows(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(dataset, out)
    bad = out / "data" / "train-00002-of-00007.parquet"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))

    seen: list[str] = []
    with pytest.raises(IntegrityError, match=r"train-00002-of-00007\.parquet: sha256 does not match") as err:
        for sample in ShardDataset(out, shuffle=False):
            seen.append(sample["id"])
    assert "\n" not in str(err.value)
    assert seen == manifest_order(dataset)[: SIZES[0] + SIZES[1]]  # shards 0 and 1, nothing of shard 2
    # also from a DataLoader worker (one: torch takes 5 s a worker to clean up after a worker raised)
    with pytest.raises(IntegrityError, match="train-00002-of-00007"):
        loader_ids(ShardLoader(ShardDataset(out), batch_size=8, num_workers=1))

    bad.write_bytes(bytes(data[:-10]))
    with pytest.raises(IntegrityError, match=r"bytes, manifest says"):
        ids(ShardDataset(out))
    bad.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        ids(ShardDataset(out))


def test_memory_and_file_urls_yield_what_the_folder_does(dataset: Path) -> None:
    local = list(ShardDataset(dataset, seed=4))
    assert list(ShardDataset(f"file://{dataset}/manifest.json", seed=4)) == local
    fs = fsspec.filesystem("memory")
    root = f"/loader-{uuid.uuid4().hex[:8]}"
    try:
        for f in dataset.rglob("*"):
            if f.is_file():
                fs.pipe(f"{root}/{f.relative_to(dataset).as_posix()}", f.read_bytes())
        remote = ShardDataset(f"memory://{root}", seed=4)
        assert list(remote) == local
        fs.pipe(f"{root}/data/train-00003-of-00007.parquet", b"not parquet")
        with pytest.raises(IntegrityError, match=r"memory://.*train-00003-of-00007\.parquet: 11 bytes"):
            list(ShardDataset(f"memory://{root}", seed=4, columns=["id"]))
        fs.pipe(f"{root}/data/train-00000-of-00007.parquet", b"not parquet")  # read when opening: columns
        with pytest.raises(IntegrityError, match=r"train-00000-of-00007\.parquet: not a readable Parquet file"):
            ShardDataset(f"memory://{root}")
    finally:
        fs.rm(root, recursive=True)


def test_not_a_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="no manifest"):
        ShardDataset(tmp_path)


# -- what comes out --------------------------------------------------------------------------------------


def test_other_readers_see_the_same_rows(dataset: Path, tmp_path: Path) -> None:
    files = [str(f) for f in train_files(dataset)]
    ours = list(ShardDataset(dataset, shuffle=False))
    want = [(s["id"], s["story"], s["num_tokens"], s["input_ids"]) for s in ours]

    df = pl.read_parquet(files)
    assert list(zip(df["id"], df["story"], df["num_tokens"], df["input_ids"].to_list(), strict=True)) == want

    import duckdb

    rows = duckdb.sql(
        f"select id, story, num_tokens, input_ids from read_parquet({files!r}, filename = true, "
        "file_row_number = true) order by filename, file_row_number").fetchall()
    assert [(a, b, c, list(d)) for a, b, c, d in rows] == want

    from datasets import load_dataset

    hf = load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert list(zip(hf["id"], hf["story"], hf["num_tokens"], hf["input_ids"], strict=True)) == want

    shuffled = list(ShardDataset(dataset, seed=11))
    assert sorted(ids(shuffled)) == sorted(df["id"].to_list()) and ids(shuffled) != df["id"].to_list()
    by_id = {s["id"]: s for s in ours}
    assert all(by_id[s["id"]] == s for s in shuffled)  # the same rows, not just the same ids


def test_columns_and_input_ids_pass_through(dataset: Path) -> None:
    sample = next(iter(ShardDataset(dataset)))
    assert "sampling" not in sample and {"id", "story", "words", "input_ids"} <= set(sample)
    assert sample["input_ids"] == token_ids(sample["id"])
    picked = next(iter(ShardDataset(dataset, columns=["id", "sampling", "input_ids"])))
    assert list(picked) == ["id", "sampling", "input_ids"] and picked["sampling"]["top_p"] == 0.95
    with pytest.raises(UserError, match="no column tokens"):
        ShardDataset(dataset, columns=["id", "tokens"])
    with pytest.raises(UserError, match="list of names"):
        ShardDataset(dataset, columns="id")


def test_collate_pads_input_ids_and_keeps_text_as_lists(dataset: Path) -> None:
    loader = ShardLoader(ShardDataset(dataset, columns=["id", "story", "num_tokens", "summary", "input_ids"]),
                         batch_size=6, num_workers=2)
    batch = next(iter(loader))
    lengths = [len(token_ids(i)) for i in batch["id"]]
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == (6, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for row, i in enumerate(batch["id"]):
        assert batch["input_ids"][row, : lengths[row]].tolist() == token_ids(i)
        assert (batch["input_ids"][row, lengths[row]:] == 0).all()
    assert all(isinstance(batch[k], list) for k in ("story", "summary", "num_tokens"))

    out = collate([{"input_ids": [5, 6, 7]}, {"input_ids": []}, {"input_ids": None}], pad_id=-1, max_length=2)
    assert out["input_ids"].tolist() == [[5, 6], [-1, -1], [-1, -1]]
    assert out["attention_mask"].tolist() == [[1, 1], [0, 0], [0, 0]]
    assert collate([{"x": 1.5, "t": "a"}, {"x": 2.0, "t": "b"}]) == {"x": [1.5, 2.0], "t": ["a", "b"]}
