"""Shared fixtures: real components only (the embedded model, a real Prefect server)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

# No network here: keep every library from phoning home or reaching a hub.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def prefect_server():
    """One real Prefect API server (temporary SQLite) for the whole session; yields its URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def embedded_backend():
    """The real embedded model (SmolLM2-135M-Instruct on llama.cpp), loaded once."""
    from pipeline.llm.llamacpp import LlamaCppStream

    return LlamaCppStream(n_threads=2)


def write_recipe(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """A real TinyStories recipe small enough for a test: four short stories."""
    return write_recipe(
        tmp_path / "tiny.toml",
        f"""
        name = "tiny"
        kind = "tinystories"
        seed = 7
        output_root = "{tmp_path / 'out'}"

        [generate]
        count = 4
        batch_size = 2
        max_features = 1
        summary_fraction = 0.5

        [sampling]
        max_tokens = 200

        [filter]
        # Loose on purpose: the test checks the plumbing, not the 135M model's prose.
        min_words = 5
        min_required_words = 0
        max_oov_fraction = 1.0
        max_repeated_ngram_fraction = 1.0

        [publish]
        validation_fraction = 0.25
        """,
    )
