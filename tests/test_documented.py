"""Behaviour the README and docs promise, each through the command or the API a user calls (issue 30).

- `tinyforge verify --execute` on a dataset without solution code: one line, exit 2;
- `tinyforge score` on a folder that is not a build: one line, exit 2;
- `tinyforge doctor` exits 1 when a check fails, and says which;
- the sandbox refuses to start without namespaces (no `unshare`), with the reason;
- the vLLM backend where vLLM is not installed: one line saying what to do;
- a build in which nothing survives: exit 1 and the message, through the command.

Elsewhere: a corrupted shard through `tinyforge verify` is tests/test_dataset_integrity.py's,
`judge-eval --judge` tests/test_judge_eval.py's, Ctrl-C during a build tests/test_build_dies.py's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main
from pipeline.errors import UserError
from tests.conftest import REPO, TINYFORGE, instant_recipe


def test_verify_execute_on_a_dataset_without_solution_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_loader import publish

    ds = publish(tmp_path / "dataset", n=12)
    assert main(["verify", str(ds), "--execute"]) == 2
    captured = capsys.readouterr()
    assert "checksums match" in captured.out  # verified first
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "--execute re-runs solution code" in err[0], err


def test_score_on_a_folder_that_is_not_a_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not-a-build").mkdir()
    assert main(["score", str(tmp_path / "not-a-build")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no recipe.json (not a tinyforge build directory" in err[0], err


def without_unshare(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has the interpreter's folder and nothing else: no `unshare`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    return {**os.environ, "PATH": str(bin_dir)}


def test_doctor_fails_with_exit_1_and_names_the_check(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "flows.cli", "doctor", "sandbox"], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=without_unshare(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed" in done.stdout + done.stderr and "sandbox" in done.stdout
    assert "unshare" in done.stdout + done.stderr  # the reason, and what to do


def test_the_sandbox_refuses_to_start_without_namespaces(tmp_path: Path) -> None:
    code = ("from pipeline.sandbox import Sandbox, SandboxUnavailable\n"
            "try:\n    Sandbox(workers=1).__enter__()\n    print('started')\n"
            "except SandboxUnavailable as exc:\n    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=without_unshare(tmp_path))
    assert done.stdout.startswith("refused: the sandbox needs `unshare`"), done.stdout + done.stderr


def test_the_vllm_backend_without_vllm_is_one_line() -> None:
    pytest.importorskip("pipeline.llm.vllm_backend")
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here")
    from pipeline.llm import load_backend
    from pipeline.llm.config import VLLMBackendConfig

    with pytest.raises(UserError, match=r"backend.kind = 'vllm' needs vLLM and a GPU: pip install -e '.\[gpu\]'") \
            as info:
        load_backend(VLLMBackendConfig(model="/models/any"))
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_a_build_where_nothing_survives_exits_1_with_the_reason(prefect_server: str, instant_url: str,
                                                                tmp_path: Path) -> None:
    recipe = instant_recipe(tmp_path / "none.toml", instant_url, name="none", out=tmp_path / "out", count=4,
                            filters="[filter]\nmin_words = 500\n")
    done = subprocess.run([TINYFORGE, "build", str(recipe)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PREFECT_API_URL": prefect_server})
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-2:]
    failed = [line for line in last if line.startswith("tinyforge: build failed: ")]
    assert len(failed) == 1 and "nothing to publish: no record survived the build (4 rejected" in failed[0], last
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "none" / "dataset").exists()
