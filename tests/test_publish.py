"""The shard contract: checksums, splits, readers, schema enforcement."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from pipeline.errors import BuildFailed, IntegrityError, SchemaError
from pipeline.publish import publish_dataset
from pipeline.publish import PublishConfig
from pipeline.records import make_id, rejected_frame
from pipeline.report import render_card
from pipeline.schema import load_schema
from pipeline.shards import read_split, verify_dataset

SCHEMA = load_schema("tinystories.v1")


def story_record(i: int) -> dict:
    story = f"Story number {i}. Tom had a red ball and he liked to jump. " * 3
    return {
        "id": make_id(story), "build_id": "test-build", "story": story, "summary": None if i % 2 else "A ball.",
        "words": ["jump", "ball", "red"], "features": ["Dialogue"] if i % 3 == 0 else [],
        "prompt": "Write a story.", "prompt_template_id": "tinystories.story@test", "summary_template_id": None,
        "generator_model": "llamacpp/test", "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 10,
                                                         "repeat_penalty": 1.1, "stop": [], "seed": i,
                                                         "sample_index": 0},
        "parent_id": None, "verification": None, "dedup_cluster": make_id(story), "num_words": 36,
        "num_tokens": 40 + i, "finish_reason": "stop",
    }


def publish(tmp: Path, n: int = 50, seed: int = 3, **cfg) -> Path:
    out = tmp / "dataset"
    publish_dataset(
        [story_record(i) for i in range(n)], rejected_frame([]), out_dir=out, schema=SCHEMA,
        cfg=PublishConfig(**{"shard_max_rows": 20, "row_group_rows": 8, "validation_fraction": 0.1, **cfg}),
        seed=seed, info={"build_id": "test-build", "recipe": {"name": "t"}},
        card=lambda m: render_card(m, title="t", description="test", fields={}),
        report=lambda m: "# report\n",
    )
    return out


def test_shards_manifest_and_checksums(tmp_path: Path) -> None:
    out = publish(tmp_path)
    ds = verify_dataset(out)
    m = ds.manifest
    assert m["splits"]["train"]["rows"] == 45 and m["splits"]["validation"]["rows"] == 5
    names = sorted(p.name for p in (out / "data").iterdir())
    assert names == ["train-00000-of-00003.parquet", "train-00001-of-00003.parquet",
                     "train-00002-of-00003.parquet", "validation-00000-of-00001.parquet"]
    for shard in m["splits"]["train"]["shards"]:
        meta = pq.ParquetFile(out / shard["path"]).metadata
        assert meta.num_rows <= 20
        assert all(meta.row_group(g).num_rows <= 8 for g in range(meta.num_row_groups))
        assert meta.row_group(0).column(0).compression == "ZSTD"
    assert m["splits"]["train"]["num_tokens"] + m["splits"]["validation"]["num_tokens"] == sum(40 + i for i in range(50))
    assert not list(tmp_path.glob(".dataset.tmp-*"))  # nothing half-written is left behind


def test_same_seed_same_bytes_other_seed_other_order(tmp_path: Path) -> None:
    a, b, c = publish(tmp_path / "a"), publish(tmp_path / "b"), publish(tmp_path / "c", seed=4)
    sha = lambda p: [s["sha256"] for s in json.loads((p / "manifest.json").read_text())["splits"]["train"]["shards"]]  # noqa: E731
    assert sha(a) == sha(b)
    assert sha(a) != sha(c)
    ids = lambda p: read_split(p, "train")["id"].to_list() + read_split(p, "validation")["id"].to_list()  # noqa: E731
    assert ids(a) != ids(c) and sorted(ids(a)) == sorted(ids(c))


def test_tampered_shard_is_refused(tmp_path: Path) -> None:
    out = publish(tmp_path)
    shard = out / "data" / "train-00001-of-00003.parquet"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        verify_dataset(out)
    shard.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        read_split(out)


def test_writer_refuses_records_that_break_the_schema(tmp_path: Path) -> None:
    bad = story_record(1) | {"features": ["Explosions"]}
    with pytest.raises(SchemaError, match="features.0"):
        publish_dataset([story_record(0), bad], rejected_frame([]), out_dir=tmp_path / "d", schema=SCHEMA,
                        cfg=PublishConfig(), seed=0, info={}, card=str, report=str)
    extra = story_record(2) | {"secret_field": 1}
    with pytest.raises(SchemaError, match="Additional properties"):
        SCHEMA.validate([extra])
    assert not (tmp_path / "d").exists()


def test_nothing_to_publish_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="nothing to publish"):
        publish_dataset([], rejected_frame([]), out_dir=tmp_path / "d", schema=SCHEMA, cfg=PublishConfig(),
                        seed=0, info={}, card=str, report=str)


def test_readers_polars_duckdb_and_datasets(tmp_path: Path) -> None:
    out = publish(tmp_path)
    df = pl.read_parquet(out / "data" / "train-*.parquet")
    assert df.height == 45 and df.schema["sampling"].fields[0].name == "temperature"

    import duckdb

    (rows, words), = duckdb.sql(
        f"select count(*), sum(num_words) from read_parquet('{out}/data/*.parquet')").fetchall()
    assert rows == 50 and words == 50 * 36

    from datasets import load_dataset

    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert ds["train"].num_rows == 45 and ds["validation"].num_rows == 5
    assert set(ds["train"].column_names) == set(SCHEMA.fields)


def test_another_configuration_has_its_own_schema_folder_and_card_entry(tmp_path: Path) -> None:
    verifier = load_schema("math_verifier.v1")
    samples = [{"build_id": "test-build", "problem_id": f"p{i // 2}", "source": "build", "question": "Q?",
                "sample_index": i % 2, "code": "def simple_math_problem():\n    return 2\n", "program": "ab",
                "status": "ok", "value": 2.0, "error": None, "majority_answer": 2.0, "gold_answer": None,
                "label": "agrees", "problem_kept": True} for i in range(6)]
    out = tmp_path / "dataset"
    publish_dataset(
        [story_record(i) for i in range(10)], rejected_frame([]), out_dir=out, schema=SCHEMA,
        cfg=PublishConfig(validation_fraction=0.0), seed=1, info={"build_id": "test-build"},
        card=lambda m: render_card(m, title="t", description="test", fields={}), report=lambda m: "# report\n",
        configs={"verifier": (verifier, samples)})
    ds = verify_dataset(out)  # the verifier shards are checksummed like the records
    assert ds.splits == ["train"] and ds.manifest["splits"]["verifier"]["schema"]["id"] == "math_verifier.v1"
    assert read_split(out, "verifier").height == 6 and sorted(p.name for p in (out / "verifier").iterdir()) == [
        "verifier-00000-of-00001.parquet"]
    assert json.loads((out / "verifier.schema.json").read_text())["x-schema-name"] == "math_verifier"

    import duckdb

    (rows,), = duckdb.sql(f"select count(*) from read_parquet('{out}/data/*.parquet')").fetchall()
    assert rows == 10  # data/ holds the records alone

    from datasets import load_dataset

    ds_v = load_dataset(str(out), "verifier", cache_dir=str(tmp_path / "hf-cache"))
    assert ds_v["train"].num_rows == 6 and "label" in ds_v["train"].column_names
    assert load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))["train"].num_rows == 10
    with pytest.raises(SchemaError):
        publish_dataset([story_record(0)], rejected_frame([]), out_dir=tmp_path / "bad", schema=SCHEMA,
                        cfg=PublishConfig(validation_fraction=0.0), seed=1, info={}, card=lambda m: "",
                        report=lambda m: "", configs={"verifier": (verifier, [samples[0] | {"label": "maybe"}])})


def test_input_ids_column_is_the_shipped_tokenizer_on_each_record(tmp_path: Path) -> None:
    from pipeline.tokenize import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    records = [story_record(i) for i in range(30)]
    ids = tok.encode([r["story"] for r in records])
    out = tmp_path / "dataset"
    publish_dataset(records, rejected_frame([]), out_dir=out, schema=SCHEMA,
                    cfg=PublishConfig(shard_max_rows=10, validation_fraction=0.1), seed=1,
                    info={"build_id": "b", "recipe": {"name": "t"}}, card=lambda m: "", report=lambda m: "",
                    input_ids=ids, tokenizer=tok.describe(True), figures={"length": b"\x89PNG fake"})
    ds = verify_dataset(out)
    assert ds.manifest["input_ids"] == {"name": "smollm2-135m-instruct", "vocab_size": 49152,
                                        "eos_id": tok.eos_id, "append_eos": True, "bos": False}
    assert ds.manifest["plots"] == {"length": "plots/length.png"} and (out / "plots" / "length.png").is_file()
    rows = pl.concat([read_split(out, s) for s in ds.splits])
    assert rows.schema["input_ids"] == pl.List(pl.Int32) and rows.height == 30
    by_story = {r["story"]: r["input_ids"] for r in rows.iter_rows(named=True)}  # shuffled, still aligned
    for r, expected in zip(records, ids, strict=True):
        assert by_story[r["story"]] == expected and expected[-1] == tok.eos_id
        assert 30 < len(expected) < 80  # real BPE: ~36 words, not one id per character or per story
    # the tokenizer round-trips: the ids are the story's
    assert tok._llama.detokenize(ids[0][:-1]).decode() == records[0]["story"]


def test_the_readmes_glob_and_load_dataset_read_the_default_configuration_once(tmp_path: Path) -> None:
    """With an S2L subset published (every selected record a second time, as its own configuration), the
    README's DuckDB glob over data/ and `load_dataset(path)` each give exactly the records, each once; the
    subset is its own folder and configuration."""
    from tests.test_loader import publish as publish_with_subset

    out = publish_with_subset(tmp_path / "dataset", n=60)
    manifest = verify_dataset(out).manifest
    default = {s: manifest["splits"][s]["rows"] for s in ("train", "validation")}
    selected = manifest["splits"]["s2l"]["rows"]
    assert selected > 0 and all(s["path"].startswith("s2l/") for s in manifest["splits"]["s2l"]["shards"])

    import duckdb

    (rows, ids), = duckdb.sql(f"select count(*), count(distinct id) from '{out}/data/*.parquet'").fetchall()
    assert rows == ids == sum(default.values())  # the README's example: each record once

    from datasets import load_dataset

    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert {s: ds[s].num_rows for s in ds} == default
    s2l = load_dataset(str(out), "s2l", cache_dir=str(tmp_path / "hf-cache"))
    assert s2l["train"].num_rows == selected and set(s2l["train"]["id"]) <= set(ds["train"]["id"])
