"""A user's mistake is one line and loses nothing (issue 29, items 7, 9, 10, 11).

Recipes are checked as `tinyforge check` checks them (in process: the console script calls
``flows.cli.main``); build folders damaged in every way the review found are built again with
``run_build`` against the instant server (a real OpenAI-compatible server on 127.0.0.1, so a build
takes a second); and the failures that happen inside a Prefect flow run through the real command in a
child process, where the console must show the one line and name the log that holds the rest.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.cli import main
from pipeline.errors import UserError
from pipeline.kinds import run_build
from pipeline.llm.cache import CacheError, ResponseCache
from pipeline.lock import wait_until_free
from pipeline.recipe import load_recipe
from pipeline.shards import verify_dataset
from tests.conftest import REPO, instant_recipe, write_recipe

GOOD = 'name = "c"\nkind = "tinystories"\noutput_root = "{out}"\n[generate]\ncount = 2\n'


def recipe_cases(tmp: Path) -> dict[str, tuple[str, str]]:
    """name -> (recipe text, what its one line must say)."""
    empty = tmp / "empty.txt"
    empty.write_text("# only a comment\n\n")
    vocab = tmp / "vocab"
    vocab.mkdir()
    for name in ("nouns", "verbs", "adjectives"):
        (vocab / f"{name}.txt").write_text("")
    (tmp / "a-file").write_text("x")
    good = GOOD.format(out=tmp / "out")
    return {
        "kind a list": ('name = "c"\nkind = ["tinystories"]\n', "kind: unknown recipe kind"),
        "kind a table": ('name = "c"\n[kind]\na = 1\n', "kind: unknown recipe kind"),
        "backend kind a list": (good + '[backend]\nkind = ["openai"]\n', "backend.kind: unknown backend"),
        "5000-deep array": (good + "x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        "a name with a newline": (good.replace('name = "c"', 'name = "c\\n"'), "is not a build name"),
        "seed = true": ("seed = true\n" + good, "seed: must be a number, not True"),
        "count = true": (good.replace("count = 2", "count = true"), "generate.count: must be a number"),
        'count = "4"': (good.replace("count = 2", 'count = "4"'), "generate.count: must be a number, not '4'"),
        "a flag as text": (good + '[fluency]\nenabled = "no"\n', "fluency.enabled: must be true or false"),
        "output_root a URL": (good.replace(f'"{tmp / "out"}"', '"file:///x"'), "is a URL"),
        "output_root a file": (good.replace(f'"{tmp / "out"}"', f'"{tmp / "a-file"}"'), "is a file, not a folder"),
        "base_url no URL": (good + '[backend]\nkind = "openai"\nbase_url = "not a url"\nmodel = "m"\n',
                            "backend.base_url: 'not a url' is not an http(s) URL"),
        "an empty sentences file": (good + f'sentence_fraction = 0.5\nsentences_path = "{empty}"\n',
                                    "generate.sentences_path: " + str(empty) + " is empty"),
        "an empty vocabulary": (good + f'vocab_dir = "{vocab}"\n', "nouns.txt is empty"),
        "a missing tokenizer": (good + '[publish]\ntokenizer = "/nowhere/tok.gguf"\n',
                                "publish.tokenizer: no such model file"),
        "a missing fluency model": (good + '[fluency]\nmodel = "/nowhere/f.gguf"\n', "fluency.model: no such model file"),
    }


CASE_NAMES = ["kind a list", "kind a table", "backend kind a list", "5000-deep array", "a name with a newline",
              "seed = true", "count = true", 'count = "4"', "a flag as text", "output_root a URL",
              "output_root a file", "base_url no URL", "an empty sentences file", "an empty vocabulary",
              "a missing tokenizer", "a missing fluency model"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_tinyforge_check_says_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    text, says = recipe_cases(tmp_path)[name]
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    assert main(["check", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], (name, err)
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_json_recipe_that_is_a_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "recipe.json"
    recipe.write_text("[1, 2]")
    assert main(["check", str(recipe)]) == 2
    assert "a recipe is a table of settings, not a list" in capsys.readouterr().err


# --- the command line --------------------------------------------------------------------------------------


def test_flags_that_cannot_work_are_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path / "r.toml", GOOD.format(out=tmp_path / "out"))
    with pytest.raises(SystemExit) as exit_:
        main(["build", str(recipe), "--wait", "nan"])
    assert exit_.value.code == 2 and "not a number of seconds" in capsys.readouterr().err
    for runner, says in (("://", "a Dask scheduler's address is tcp://HOST:PORT"),
                         ("tcp://127.0.0.1:1", "no Dask scheduler answers there")):
        assert main(["build", str(recipe), "--runner", runner]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "out").exists()


# --- build folders ------------------------------------------------------------------------------------------


def recipe_in(where: Path, url: str, name: str = "b", count: int = 12) -> Path:
    """A build of ``count`` instant-server stories (tests/conftest.py) into ``where / 'out'``."""
    return instant_recipe(where / f"{name}.toml", url, name=name, out=where / "out", count=count, batch_size=6,
                          seed=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, instant_url: str) -> Path:
    """A finished build's output root (copy it before damaging it)."""
    where = tmp_path_factory.mktemp("built")
    run_build(load_recipe(recipe_in(where, instant_url)))
    return where


def copy_of(built: Path, tmp_path: Path, instant_url: str) -> tuple[Path, Path]:
    shutil.copytree(built / "out", tmp_path / "out")
    return tmp_path / "out" / "b", recipe_in(tmp_path, instant_url)


def rows_of(build: Path) -> int:
    return verify_dataset(build / "dataset").manifest["splits"]["train"]["rows"]


def test_a_damaged_stage_table_is_made_again(built: Path, tmp_path: Path, instant_url: str) -> None:
    build, recipe = copy_of(built, tmp_path, instant_url)
    rows = rows_of(build)
    table = build / "stages" / "filter" / "records.parquet"
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    outcome = run_build(load_recipe(recipe))
    assert pq.read_metadata(table).num_rows > 0  # written whole again
    assert not [s.name for s in outcome.stages if s.name == "filter" and s.skipped]
    assert rows_of(build) == rows


def test_a_damaged_published_folder_is_published_again(built: Path, tmp_path: Path, instant_url: str) -> None:
    for damage in ("manifest", "shard"):
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        build, recipe = copy_of(built, tmp_path, instant_url)
        rows = rows_of(build)
        if damage == "manifest":
            (build / "dataset" / "manifest.json").write_text("{ not json")
        else:
            shard = next((build / "dataset" / "data").glob("*.parquet"))
            shard.write_bytes(shard.read_bytes()[:50])
        run_build(load_recipe(recipe))
        assert rows_of(build) == rows, damage  # verified, whole again


def test_build_folder_parts_that_are_not_what_they_should_be(built: Path, tmp_path: Path, instant_url: str) -> None:
    build, recipe = copy_of(built, tmp_path, instant_url)
    (build / ".lock").unlink(missing_ok=True)
    (build / ".lock").mkdir()
    with pytest.raises(UserError, match=r"\.lock: not a file"):
        wait_until_free(build)  # what `tinyforge build` and the flow do before anything else
    (build / ".lock").rmdir()
    shutil.rmtree(build / "stages")
    (build / "stages").write_text("oops")
    with pytest.raises(UserError, match="stages: a file where a build's folder should be"):
        run_build(load_recipe(recipe))


def test_a_damaged_cross_build_index_entry_is_named(built: Path, tmp_path: Path, instant_url: str) -> None:
    _, _ = copy_of(built, tmp_path, instant_url)
    (entry,) = (tmp_path / "out" / "index").rglob("b.parquet")
    entry.write_bytes(b"PAR1 damaged")
    other = recipe_in(tmp_path, instant_url, name="other")
    with pytest.raises(UserError, match="b.parquet: a damaged entry of the cross-build index") as info:
        run_build(load_recipe(other))
    assert "\n" not in str(info.value)
    # the build that owns it writes it again when it publishes
    run_build(load_recipe(recipe_in(tmp_path, instant_url)))
    assert pq.read_metadata(entry).num_rows > 0


@pytest.mark.parametrize(("name", "content", "says"), [
    ("eval.jsonl", b"\xff\xfe not utf-8", "not UTF-8 text"),
    ("eval.parquet", b"PAR1 not parquet", "not a readable Parquet file"),
    ("eval.jsonl", b'{"question": "ok"}\n[1, 2]\n', "eval.jsonl:2: not a JSON object line"),
])
def test_an_evaluation_file_that_cannot_be_read_is_one_line(tmp_path: Path, instant_url: str, name: str, content: bytes,
                                                             says: str) -> None:
    (tmp_path / name).write_bytes(content)
    recipe = recipe_in(tmp_path, instant_url)
    recipe.write_text(recipe.read_text() + f'[[decontaminate.eval_sets]]\npath = "{tmp_path / name}"\n')
    with pytest.raises(UserError, match=says) as info:
        run_build(load_recipe(recipe))
    assert "\n" not in str(info.value)


def test_builds_and_inspect_show_a_damaged_build_beside_the_others(built: Path, tmp_path: Path, instant_url: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    copy_of(built, tmp_path, instant_url)
    out = tmp_path / "out"
    for name, content in (("garbled", "{ not json"), ("listed", "[1, 2]")):
        (out / name).mkdir()
        (out / name / "recipe.json").write_text(content)
    (out / "deep").mkdir()
    (out / "deep" / "recipe.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["builds", "--output-root", str(out)]) == 0
    table = capsys.readouterr().out
    assert "published" in table and table.count("damaged") == 3, table
    assert main(["inspect", "garbled", "--output-root", str(out)]) == 0
    assert "damaged" in capsys.readouterr().out
    (out / "b" / "recipe.json").write_text("{ not json")
    assert main(["score", str(out / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recipe.json: unreadable" in err[0], err


# --- the response cache ----------------------------------------------------------------------------------


def test_a_damaged_response_cache_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite"
    ResponseCache(path).close()
    good = path.read_bytes()
    for damage, says in (("garbage", "damaged"), ("truncated", "damaged")):
        path.write_bytes(b"not a database, just text" * 100 if damage == "garbage" else good[:1000])
        with pytest.raises(CacheError, match=says) as info:
            cache = ResponseCache(path)
            len(cache)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_locked_response_cache_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "responses.sqlite"
    ResponseCache(path).close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setenv("TINYFORGE_CACHE_LOCK_TIMEOUT_S", "0.2")
    try:
        with pytest.raises(CacheError, match="locked by another process for 0.2 s"):
            ResponseCache(path).import_rows([ROW])
    finally:
        holder.rollback()
        holder.close()


ROW = {"key": "k", "model_id": "m", "sample_index": 0, "text": "t", "finish_reason": "stop", "prompt_tokens": 1,
       "completion_tokens": 1, "request_json": "{}", "created_at": 0.0}


def run_in_mount_namespace(script: str, timeout: int = 300, env: dict[str, str] | None = None,
                           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs mount namespaces (root)")
def test_a_read_only_response_cache_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite"
    ResponseCache(path).close()
    probe = f"from pipeline.llm.cache import ResponseCache\nResponseCache({str(path)!r}).import_rows([{ROW!r}])"
    done = run_in_mount_namespace(f"mount --bind -o ro {tmp_path} {tmp_path} && {sys.executable} -c \"{probe}\"")
    assert done.returncode == 1 and "CacheError" in done.stderr and "read-only" in done.stderr, done.stderr[-800:]


# --- failures inside a flow, through the real command --------------------------------------------------------


def problems(stderr: str) -> list[str]:
    """The console's lines that are not progress: errors, tracebacks, Prefect's ERROR records."""
    return [line for line in stderr.splitlines()
            if line.startswith(("tinyforge: error", "Traceback")) or "| ERROR" in line or "| WARNING" in line]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=env)


@pytest.mark.slow  # the command runs its flow against the session's Prefect server
def test_a_user_error_inside_a_flow_is_one_line_naming_its_log(tmp_path: Path, instant_url: str,
                                                               prefect_server: str) -> None:
    """A damaged response cache is found inside the flow (by the first batch): Prefect's ~120 lines of
    tracebacks go to a log file; the console says the one line, and where that file is."""
    recipe = recipe_in(tmp_path, instant_url)
    (tmp_path / "out" / "cache").mkdir(parents=True)
    (tmp_path / "out" / "cache" / "responses.sqlite").write_text("garbage " * 200)
    done = cli("build", str(recipe), env={**os.environ, "PREFECT_API_URL": prefect_server})
    assert done.returncode == 2, done.stderr[-2000:]
    errors = problems(done.stderr)
    assert len(errors) == 1 and errors[0].startswith("tinyforge: error: ") and "damaged" in errors[0], errors
    log = Path(errors[0].rsplit("details: ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text() and "CacheError" in log.read_text()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs mount namespaces (root)")
@pytest.mark.parametrize("size", ["96k", "256k"])
@pytest.mark.slow  # the command runs its flow against the session's Prefect server
def test_a_full_disk_is_one_line_and_leaves_no_temporary_files(tmp_path: Path, instant_url: str,
                                                              prefect_server: str, size: str) -> None:
    """The output root on a small tmpfs: the build of 40 stories runs out of space partway (the cache
    first, or a stage); it says so in one line, what it finished is kept and nothing half-written
    (``stages/.*.tmp-*``, ``.*.tmp``) is left."""
    recipe = recipe_in(tmp_path, instant_url, count=40)
    out = tmp_path / "out"
    out.mkdir()
    done = run_in_mount_namespace(f"mount -t tmpfs -o size={size} tmpfs {out} && {sys.executable} -m flows.cli "
                                  f"build {recipe} ; echo rc=$? ; find {out} -name '*tmp*'",
                                  env={**os.environ, "PREFECT_API_URL": prefect_server})
    lines = done.stdout.strip().splitlines()
    rc_at = next(i for i, line in enumerate(lines) if line.startswith("rc="))
    assert lines[rc_at] == "rc=2", done.stderr[-2000:]
    assert lines[rc_at + 1:] == []  # no temporary file anywhere under the output root
    errors = problems(done.stderr)
    assert len(errors) == 1 and ("No space left on device" in errors[0] or "disk is full" in errors[0]), errors
