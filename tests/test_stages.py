from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.stages import BuildDir


def test_commit_then_done_only_for_the_same_fingerprint(tmp_path: Path) -> None:
    build = BuildDir(tmp_path / "b")
    assert build.done("filter", "fp1") is None
    df = pl.DataFrame({"id": ["a", "b"], "x": [1, 2]})
    result = build.commit("filter", "fp1", {"records": df, "rejected": df.head(0)}, {"in": 2}, 0.5)
    assert not result.skipped and result.rows == {"records": 2, "rejected": 0}
    again = build.done("filter", "fp1")
    assert again is not None and again.skipped and again.stats == {"in": 2}
    assert build.done("filter", "fp2") is None  # changed config or inputs: run again
    assert build.read("filter").equals(df)


def test_recommit_replaces_atomically(tmp_path: Path) -> None:
    build = BuildDir(tmp_path / "b")
    build.commit("s", "fp1", {"records": pl.DataFrame({"v": [1]})}, {}, 0)
    build.commit("s", "fp2", {"records": pl.DataFrame({"v": [2, 3]})}, {}, 0)
    assert build.read("s")["v"].to_list() == [2, 3]
    assert sorted(p.name for p in build.stages.iterdir()) == ["s"]  # no temporary or old folders left


def test_a_stage_missing_its_table_is_not_done(tmp_path: Path) -> None:
    build = BuildDir(tmp_path / "b")
    build.commit("s", "fp", {"records": pl.DataFrame({"v": [1]})}, {}, 0)
    (build.stage_path("s") / "records.parquet").unlink()
    assert build.done("s", "fp") is None


def test_parts_survive_and_are_read_in_order(tmp_path: Path) -> None:
    parts = BuildDir(tmp_path / "b").parts("generate", "f" * 64)
    parts.write(1, {"records": pl.DataFrame({"i": [2, 3]})}, {"n": 2})
    assert not parts.has(0) and parts.has(1)
    parts.write(0, {"records": pl.DataFrame({"i": [0, 1], "extra": [None, None]})}, {"n": 2})
    assert parts.read(range(2), "records")["i"].to_list() == [0, 1, 2, 3]
    assert parts.stats(1) == {"n": 2}


def test_a_streamed_gather_writes_what_the_whole_concat_would(tmp_path: Path) -> None:
    """Parts whose schemas differ (a column all null in one batch and text in the next, a column only some
    batches have, an empty batch) are committed a part at a time with the relaxed union's columns and
    types: the stage's table equals the concatenation of all of them."""
    build = BuildDir(tmp_path / "b")
    parts = build.parts("generate", "f" * 64)
    frames = [pl.DataFrame({"id": ["a", "b"], "note": [None, None], "n": [1, 2]}),
              pl.DataFrame(),
              pl.DataFrame({"id": ["c"], "note": ["late"], "n": [3.5], "extra": [["x", "y"]]}),
              pl.DataFrame({"id": [], "note": [], "n": []}, schema={"id": pl.String, "note": pl.Null, "n": pl.Int64})]
    for i, df in enumerate(frames):
        parts.write(i, {"records": df}, {})
    whole = parts.read(range(4), "records")
    slices = parts.slices(range(4), "records")
    assert slices is not None
    build.commit("generate", "fp", {"records": slices}, {}, 0)
    gathered = build.read("generate")
    assert gathered.schema == whole.schema and gathered.equals(whole)
    assert gathered["note"].to_list() == [None, None, "late"] and gathered["n"].dtype == pl.Float64

    parts.write(4, {"records": pl.DataFrame()}, {})
    assert parts.slices(range(1, 2), "records") is None  # no part with columns: the caller's default


def test_rejections_are_counted_by_reason_across_parts(tmp_path: Path) -> None:
    parts = BuildDir(tmp_path / "b").parts("generate", "f" * 64)
    parts.write(0, {"rejected": pl.DataFrame({"reason": ["b", "a", "b"]})}, {})
    parts.write(1, {"rejected": pl.DataFrame()}, {})
    parts.write(2, {"rejected": pl.DataFrame({"reason": ["a"]})}, {})
    assert parts.column_counts(range(3), "rejected", "reason") == {"a": 2, "b": 2}
