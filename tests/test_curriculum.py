"""Curriculum order in the loader: levels by a column, the three schedules over epochs, ranks, exact resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.curriculum import Curriculum, assign_levels
from pipeline.errors import UserError
from pipeline.loader import ShardDataset, ShardLoader
from tests.test_loader import ROWS, SIZES, WORKERS_3, ids, loader_ids, publish, reshard, train_files


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = publish(tmp_path_factory.mktemp("curriculum") / "dataset", n=230)
    reshard(out, "train", SIZES)
    return out


def levels_by_hand(out: Path, column: str, k: int) -> dict[str, int]:
    """Each train row's level, computed here: ranked by the column (its values are distinct), cut in k."""
    rows = pl.read_parquet(train_files(out)).sort(column)
    return {i: n for n, part in enumerate(np.array_split(np.arange(rows.height), k))
            for i in rows["id"].gather(part).to_list()}


def epoch(dataset: Path, curriculum: Curriculum, e: int, **kw) -> list[str]:
    ds = ShardDataset(dataset, seed=4, order=curriculum, **kw)
    ds.set_epoch(e)
    return ids(ds)


@pytest.mark.parametrize("schedule", ["sequential", "incremental", "hybrid"])
def test_each_schedule_holds_the_levels_it_names_in_each_epoch(dataset: Path, schedule: str) -> None:
    level = levels_by_hand(dataset, "num_tokens", 3)
    c = Curriculum("num_tokens", schedule, levels=3)  # type: ignore[arg-type]
    epochs = [epoch(dataset, c, e) for e in range(4)]
    held = [[level[i] for i in stream] for stream in epochs]
    if schedule == "sequential":  # level k alone, each row once; after the last stage, the last again
        assert [sorted(set(h)) for h in held] == [[0], [1], [2], [2]]
        assert sorted(epochs[0] + epochs[1] + epochs[2]) == sorted(level)
    elif schedule == "incremental":  # levels 0..k, shuffled together: easy rows come late too
        assert [sorted(set(h)) for h in held] == [[0], [0, 1], [0, 1, 2], [0, 1, 2]]
        assert held[1] != sorted(held[1]) and sorted(epochs[2]) == sorted(level)
    else:  # level k on its own, then levels 0..k together
        n1 = sum(v == 1 for v in level.values())
        assert held[0] == [0] * len(held[0])
        assert held[1][:n1] == [1] * n1 and sorted(set(held[1][n1:])) == [0, 1]
        assert len(epochs[1]) == n1 + sum(v <= 1 for v in level.values())
    for e, stream in enumerate(epochs):  # every part reads each row of its levels once
        assert ShardDataset(dataset, seed=4, order=c).epoch_rows(e) == len(stream)


def test_levels_are_equal_parts_easy_to_hard_ties_broken_by_the_seed() -> None:
    values = np.array([5, 1, 1, 1, 3, 9, 2, 2])
    level = assign_levels(values, 4, seed=1)
    assert np.bincount(level).tolist() == [2, 2, 2, 2]
    for k in range(3):  # every value of a level is at most every value of the next
        assert values[level == k].max() <= values[level == k + 1].min()
    assert level[5] == 3 and level[0] == 3 and level[4] == 2  # 9 and 5 are hardest
    assert assign_levels(values, 4, seed=1).tolist() == level.tolist()
    assert assign_levels(-values, 4, seed=1, descending=True).tolist() == level.tolist()
    tied = [assign_levels(np.zeros(12), 3, seed=s).tolist() for s in range(4)]
    assert len({tuple(t) for t in tied}) > 1  # all tied: the seed decides


def test_the_order_depends_on_the_seed_and_epoch_only(dataset: Path) -> None:
    c = Curriculum("difficulty", "incremental", levels=2)  # difficulty has many ties
    assert epoch(dataset, c, 1) == epoch(dataset, c, 1)
    other = ShardDataset(dataset, seed=5, order=c)
    other.set_epoch(1)
    assert ids(other) != epoch(dataset, c, 1)


def test_descending_puts_high_values_first(dataset: Path) -> None:
    level = levels_by_hand(dataset, "num_tokens", 3)
    first = epoch(dataset, Curriculum("num_tokens", "sequential", levels=3, descending=True), 0)
    assert {level[i] for i in first} == {2}


def test_epochs_per_stage_hold_a_stage_longer(dataset: Path) -> None:
    c = Curriculum("num_tokens", "sequential", levels=3, epochs_per_stage=2)
    level = levels_by_hand(dataset, "num_tokens", 3)
    assert [{level[i] for i in epoch(dataset, c, e)} for e in range(5)] == [{0}, {0}, {1}, {1}, {2}]


@pytest.mark.parametrize("partition", ["interleave", "blocks"])
def test_ranks_split_a_curriculum_epoch_between_them(dataset: Path, partition: str) -> None:
    c = Curriculum("num_tokens", "hybrid", levels=3)
    whole = epoch(dataset, c, 1, balance="none")
    ranks = [epoch(dataset, c, 1, rank=r, world_size=3, partition=partition, balance="none") for r in range(3)]
    assert sorted(i for r in ranks for i in r) == sorted(whole)
    if partition == "interleave":
        assert [ranks[g % 3][g // 3] for g in range(len(whole))] == whole


@WORKERS_3
@pytest.mark.parametrize("workers_after,batch_after", [(2, 8), (0, 8), (3, 5)])
def test_resume_mid_curriculum_with_two_workers_is_exact(dataset: Path, workers_after: int, batch_after: int) -> None:
    """Stop a 2-worker loader inside a hybrid epoch, across the boundary of its two parts; a fresh loader
    from the saved state yields the rest: together they are the uninterrupted epoch, in its order."""
    c, B = Curriculum("num_tokens", "hybrid", levels=3), 8

    def loader(workers: int, batch: int) -> ShardLoader:
        return ShardLoader(ShardDataset(dataset, seed=4, order=c), batch_size=batch, num_workers=workers)

    full_loader = loader(2, B)
    full_loader.set_epoch(2)
    full = loader_ids(full_loader)
    hard = sum(v == 2 for v in levels_by_hand(dataset, "num_tokens", 3).values())
    assert len(full) == hard + ROWS
    stop = hard // B + 2  # two batches into the review part
    head, first = [], loader(2, B)
    first.set_epoch(2)
    for k, batch in enumerate(first):
        head += batch["id"]
        if k + 1 == stop:
            state = json.loads(json.dumps(first.state_dict()))
            break
    assert state["epoch"] == 2 and state["samples_seen"] == stop * B and state["order"]["curriculum"]["schedule"] == "hybrid"

    fresh = loader(workers_after, batch_after)
    fresh.load_state_dict(state)
    fresh.set_epoch(2)
    rest = loader_ids(fresh)
    assert head == full[: stop * B] and head + rest == full
    assert fresh.state_dict()["samples_seen"] == len(full)


def test_a_state_from_another_order_is_refused(dataset: Path) -> None:
    curriculum = ShardDataset(dataset, seed=4, order=Curriculum("num_tokens"))
    shuffled = ShardDataset(dataset, seed=4)
    with pytest.raises(UserError, match="different order"):
        shuffled.load_state_dict(curriculum.state_dict(10))
    with pytest.raises(UserError, match="different order"):
        ShardDataset(dataset, seed=4, order=Curriculum("num_tokens", levels=4)).load_state_dict(
            curriculum.state_dict(10))
    ShardDataset(dataset, seed=4, order=Curriculum("num_tokens")).load_state_dict(curriculum.state_dict(10))


def test_bad_curricula_are_one_clear_error(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="has no column 'nope'"):
        ShardDataset(dataset, order=Curriculum("nope"))
    with pytest.raises(UserError, match="numeric column; 'story' is"):
        ShardDataset(dataset, order=Curriculum("story"))
    with pytest.raises(UserError, match="'ifd' is null in"):
        ShardDataset(dataset, order=Curriculum("ifd"))
    with pytest.raises(UserError, match="schedule must be one of"):
        Curriculum("num_tokens", "random")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="levels must be a positive integer"):
        Curriculum("num_tokens", levels=0)
    with pytest.raises(UserError, match="order must be 'shuffle' or a Curriculum"):
        ShardDataset(dataset, order="sorted")  # type: ignore[arg-type]
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    (copy / train_files(dataset)[0].relative_to(dataset)).unlink()
    with pytest.raises(Exception, match="missing"):
        ShardDataset(copy, order=Curriculum("num_tokens"))
