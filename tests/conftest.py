"""Shared fixtures: real components only (the embedded model, a real Prefect server)."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

# No network here: keep every library from phoning home or reaching a hub.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parent.parent
TINYFORGE = str(Path(sys.executable).parent / "tinyforge")  # the installed command, as a user runs it

# Filters that keep any finished story: for builds that test the plumbing, not the prose.
LOOSE_FILTER = """
[filter]
min_words = 5
min_required_words = 0
max_oov_fraction = 1.0
max_repeated_ngram_fraction = 1.0
"""


def recipe_seed(default: int) -> int:
    """The seed of a test's build recipe: ``default``, or $TINYFORGE_TEST_SEED when set.

    Another seed means other words, features and sampling seeds, so other sampled text: running the
    build tests under a few seeds is how to check that none depends on what the model happens to write.
    """
    return int(os.environ.get("TINYFORGE_TEST_SEED", default))


@pytest.fixture(scope="session")
def prefect_server():
    """One real Prefect API server (temporary SQLite) for the whole session; yields its URL.

    Started as a ``TemporaryServer``, the builds' own kind: if pytest itself dies (a native crash in a
    test), the kernel takes the server with it instead of leaving it holding a port.
    """
    # Prefect configures logging on the first `from prefect import flow`, binding its console handler to
    # whatever sys.stderr is then. Done inside a test that uses capsys, that is capsys's buffer, closed
    # when the test ends: every later flow run's log line then fails, and the failure is printed through
    # Prefect's print-to-log hook, which logs it again, until RecursionError. Configure it here, while
    # sys.stderr is pytest's session-long capture.
    import prefect.main  # noqa: F401
    import prefect.testing.utilities as harness
    from prefect.settings import PREFECT_API_URL

    from flows.temporary_server import server_class

    harness.SubprocessASGIServer = server_class()
    with harness.prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a command that starts its own temporary Prefect server: one ``PREFECT_HOME`` for
    the session, not the user's. The first such command creates its database (about 7 s of migrations on
    2 cores); the others reuse it, as a user's every build after the first does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return env | {"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home")),
                  "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@pytest.fixture(scope="session")
def instant_url() -> Iterator[str]:
    """One instant OpenAI-compatible server (tests/instant_server.py) for the session; yields its base URL."""
    from tests.instant_server import instant_server

    with instant_server() as url:
        yield url


def story_recipe(path: Path, *, name: str, out: Path, count: int, seed: int, batch_size: int | None = None,
                 backend: str = "", generate: str = "", difficulty: str = "", publish: str = "",
                 filters: str = LOOSE_FILTER, extra: str = "") -> Path:
    """A small TinyStories recipe with no exemplar turns and no model-based scoring (fluency, difficulty),
    all train: what :func:`instant_recipe` and :func:`part_recipe` share. ``backend`` is a whole
    ``[backend]`` section (none: the embedded model), ``generate``, ``difficulty`` and ``publish`` add keys
    (TOML lines) to their sections, ``filters`` is the ``[filter]`` section and ``extra`` adds sections at the end."""
    body = textwrap.dedent(f"""
        name = "{name}"
        kind = "tinystories"
        seed = {seed}
        output_root = "{out}"
        [generate]
        count = {count}
        batch_size = {batch_size or count}
        exemplars = 0
        {{generate}}
        [difficulty]
        enabled = false
        {{difficulty}}
        [fluency]
        enabled = false
        [publish]
        validation_fraction = 0.0
        {{publish}}
    """).replace("{generate}", generate).replace("{difficulty}", difficulty).replace("{publish}", publish)
    return write_recipe(path, body + filters + textwrap.dedent(backend) + textwrap.dedent(extra))


def instant_recipe(path: Path, url: str, *, name: str, out: Path, count: int, batch_size: int = 4,
                   seed: int = 7, summaries: float = 0.0, backend: str = "", difficulty: str = "",
                   publish: str = "", filters: str = LOOSE_FILTER, extra: str = "") -> Path:
    """A TinyStories recipe for a build whose plumbing is what a test checks (runners, locks, resuming,
    flags, storage): its stories come from the OpenAI-compatible server at ``url`` (the instant server
    answers at once, the same story for the same prompt and seed on any CPU, so row counts are exact), no
    exemplar turns, ``summaries`` (the share of stories summarized; none by default), no model-based scoring,
    and ``filters`` (the ``[filter]`` section, by default :data:`LOOSE_FILTER`). ``backend``, ``difficulty``
    and ``publish`` add keys (TOML lines) to their sections, ``extra`` adds sections at the end."""
    section = f'[backend]\nkind = "openai"\nbase_url = "{url}"\nmodel = "instant"\napi_key_env = "NONE"\n{backend}\n'
    return story_recipe(path, name=name, out=out, count=count, seed=seed, batch_size=batch_size, backend=section,
                        generate=f"summary_fraction = {summaries}", difficulty=difficulty, publish=publish,
                        filters=filters, extra=extra)


@pytest.fixture(scope="session")
def embedded_backend():
    """The real embedded model (SmolLM2-135M-Instruct on llama.cpp), loaded once."""
    from pipeline.llm.llamacpp import LlamaCppStream

    return LlamaCppStream(n_threads=2)


def write_recipe(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def part_recipe(path: Path, name: str, seed: int, count: int, generate: str = "", extra: str = "") -> Path:
    """A TinyStories recipe for a test of one part (the judge, decontamination, a sentence) on the embedded
    model: ``count`` stories in one batch, under ``<path's folder>/out``, with no exemplar turns, no fluency
    or difficulty scoring and filters that keep any finished story; ``generate`` adds keys to [generate],
    ``extra`` sections after the rest."""
    return story_recipe(path, name=name, out=path.parent / "out", count=count, seed=seed,
                        generate="max_features = 1\n" + generate, extra=extra)


# Story indices of `tiny_recipe` whose completions are in its response cache before a test builds it
# (tests/replay.py): whatever the model samples for the others on this CPU, something is published.
TINY_PRELOADED = (0, 5)


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """A real TinyStories recipe small enough for a test: four short stories.

    Story 0 (and story 5, for tests that raise the count) is preloaded into the response cache with a
    hand-written story that passes every filter; the model writes the others, and every summary.
    """
    from tests.replay import preload_stories

    recipe = write_recipe(
        tmp_path / "tiny.toml",
        textwrap.dedent(f"""
        name = "tiny"
        kind = "tinystories"
        seed = {recipe_seed(7)}
        output_root = "{tmp_path / 'out'}"

        [generate]
        count = 4
        batch_size = 2
        max_features = 1
        summary_fraction = 0.5

        [sampling]
        max_tokens = 200

        [publish]
        validation_fraction = 0.25
        """) + LOOSE_FILTER,  # loose on purpose: the tests check the plumbing, not the 135M model's prose
    )
    preload_stories(recipe, TINY_PRELOADED)
    return recipe


@pytest.fixture(autouse=True)
def _fast_tests_stay_fast(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make test-fast` leaves out the tests marked slow: every one that starts a Prefect server or loads
    the embedded model. An unmarked test that does either fails here, saying so, instead of quietly making
    the fast run slow."""
    if request.node.get_closest_marker("slow"):
        return
    for fixture in ("prefect_server", "embedded_backend"):
        assert fixture not in request.fixturenames, f"{request.node.nodeid} uses {fixture}: mark it slow"
    import llama_cpp
    import llama_cpp.llama_cpp as low_level

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{request.node.nodeid} loads the embedded model: mark it @pytest.mark.slow")

    load_weights = low_level.llama_model_load_from_file

    def only_the_vocabulary_file(path: bytes, params: object) -> object:
        if not params.vocab_only:  # type: ignore[attr-defined]  # (the tokenizer reads only the vocabulary)
            refuse()
        return load_weights(path, params)

    for module in (llama_cpp, low_level):  # the engine's load, and llama_cpp.Llama's (the IFD/fluency scorer)
        monkeypatch.setattr(module, "llama_model_load_from_file", only_the_vocabulary_file)
