"""The float16 re-encoding the engine runs small models from: made once, and the same model."""

from __future__ import annotations

import pytest

from pipeline.difficulty.ifd import LlamaScorer
from pipeline.llm.llamacpp import resolve_model_path
from pipeline.llm.weights import _file_info, engine_weights
from pipeline.paths import SEEDS_FILE
from pipeline.tinygsm.recipe import SeedsConfig
from pipeline.tinygsm.seeds import load_seeds

pytestmark = pytest.mark.slow
F16 = 1  # llama.cpp's LLAMA_FTYPE_MOSTLY_F16


def mean_loss(model: str, texts: list[str]) -> float:
    scorer = LlamaScorer(model, n_ctx=512, n_threads=2)
    losses = [scorer.losses(scorer.tokens(t, bos=True)) for t in texts]
    return float(sum(x.sum() for x in losses) / sum(len(x) for x in losses))


def test_float16_copy_is_made_once_and_scores_text_like_the_shipped_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TINYFORGE_MODEL_CACHE", str(tmp_path / "models"))
    shipped = resolve_model_path("smollm2-135m-instruct")
    copy = engine_weights(shipped, "auto")
    assert copy.parent == tmp_path / "models" and copy.name.endswith(".f16.gguf")
    file_type, n_params = _file_info(copy)
    assert file_type == F16 and n_params == _file_info(shipped)[1]
    stamp = copy.stat().st_mtime_ns
    assert engine_weights(shipped, "auto") == copy and copy.stat().st_mtime_ns == stamp  # cached, not redone
    assert list((tmp_path / "models").iterdir()) == [copy]  # no temporary file left behind
    assert engine_weights(copy, "auto") == copy  # already float: used as it is
    assert engine_weights(shipped, "file") == shipped

    # The same model: per-token loss on the shipped seed problems agrees within 1%
    # (measured: 2.885 nats from Q4_1, 2.880 from float16; a Q4_0 requantization scores 3.019).
    texts = [s.question for s in load_seeds(SeedsConfig(path=SEEDS_FILE, limit=30))]
    shipped_loss, copy_loss = mean_loss(str(shipped), texts), mean_loss(str(copy), texts)
    assert abs(copy_loss - shipped_loss) / shipped_loss < 0.01
