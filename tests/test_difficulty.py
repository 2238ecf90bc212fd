"""Difficulty scores: the planted-corpus validation, S2L selection, LP and IFD on real models."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.difficulty.learning_percentage import auroc, difficulty_percentile, learning_percentage
from pipeline.difficulty.planted import planted_corpus
from pipeline.difficulty.s2l import balanced_select, kmeans, purity
from pipeline.difficulty.config import DifficultyConfig

SMALL = DifficultyConfig(ifd=False, d_model=64, n_layers=2, n_heads=4, seq_len=96, vocab_size=512, epochs=3,
                         checkpoints_per_epoch=2, batch_size=16, s2l_clusters=8)


@pytest.mark.slow
def test_planted_corpus_hard_records_rank_as_hard() -> None:
    from pipeline.difficulty.score import score_pairs

    pairs, hard = planted_corpus(60, 60, seed=0)
    hard = np.array(hard)
    result = score_pairs(pairs, SMALL, seed=0)
    lp = np.array(result.columns["learning_percentage"])
    area = auroc(-lp, hard)  # low learning percentage = hard
    labels = np.array(result.columns["s2l_cluster"])
    cluster_purity = purity(labels, hard.astype(int))
    print(f"planted corpus: AUROC {area:.3f}, S2L purity {cluster_purity:.3f}")
    assert area >= 0.9
    assert cluster_purity >= 0.8
    assert len(result.columns["loss_trajectory"][0]) == 1 + 3 * 2
    difficulty = np.array(result.columns["difficulty"])
    assert difficulty[hard].mean() > difficulty[~hard].mean()
    assert result.summary["s2l_selected"] == 60 == sum(result.columns["s2l_selected"])


def test_learning_percentage_formula() -> None:
    # perplexities 100 -> 20 -> 10 -> 10 (epochs 1..3): 80 of the 90 drop happened in epoch 1
    losses = np.log(np.array([[100.0, 50.0, 20.0, 15.0, 10.0, 10.0, 10.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]]))
    lp = learning_percentage(losses, epoch_columns=[2, 4, 6])
    assert lp[0] == pytest.approx(80 / 90) and lp[1] == 0.0  # no drop at all: 0, as in the paper's code
    assert difficulty_percentile(np.array([0.9, 0.1, 0.5])).tolist() == [0.0, 1.0, 0.5]


def test_s2l_takes_small_clusters_whole_and_splits_the_rest_evenly() -> None:
    labels = np.array([0] * 30 + [1] * 5 + [2] * 2)
    chosen = balanced_select(labels, budget=12, seed=0)
    counts = np.bincount(labels[chosen], minlength=3)
    assert counts.tolist() == [5, 5, 2]
    assert balanced_select(labels, budget=12, seed=0).tolist() == chosen.tolist()  # seeded


def test_kmeans_separates_clear_groups() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (20, 3)), rng.normal(5, 0.1, (10, 3))])
    labels = kmeans(x, 2, seed=1)
    assert purity(labels, np.array([0] * 20 + [1] * 10)) == 1.0 and labels[0] == 0  # 0 = the largest


@pytest.mark.slow
def test_ifd_with_the_embedded_model() -> None:
    from pipeline.difficulty.ifd import LlamaScorer, ifd_scores

    sentence = "the red fox jumps over the lazy brown dog near the old river"
    pairs = [(f"Repeat exactly: {sentence}", sentence), ("What is the capital of France?", sentence)]
    s = ifd_scores(pairs, LlamaScorer(n_threads=2))
    assert s.ifd[0] < s.ifd[1]  # an instruction that contains the answer helps; an unrelated one does not
    assert np.allclose(s.ic_ifd, s.ifd / s.loss_q)
    assert (s.loss_a > 0).all() and np.isfinite(s.ifd).all()


def test_a_sample_scores_that_many_records_and_leaves_the_rest_null() -> None:
    from pipeline.difficulty.score import sample_rows, score_pairs

    pairs, _ = planted_corpus(100, 100, seed=0)
    cfg = SMALL.model_copy(update={"epochs": 1, "sample": 120})
    result = score_pairs(pairs, cfg, seed=3)
    scored = [i for i, d in enumerate(result.columns["difficulty"]) if d is not None]
    assert len(scored) == 120 and scored == sample_rows(200, 120, 3).tolist()
    assert sample_rows(200, 120, 3).tolist() != sample_rows(200, 120, 4).tolist()  # the seed draws it
    for name, values in result.columns.items():
        assert len(values) == 200
        rest = {values[i] for i in set(range(200)) - set(scored)}
        assert rest == ({False} if name == "s2l_selected" else {None}), name
    assert sum(result.columns["s2l_selected"]) == result.summary["s2l_selected"] == round(0.5 * 120)
    assert (result.summary["scored"], result.summary["records"], result.summary["sample"]) == (120, 200, 120)
    assert result.summary["proxy"]["records"] == 120  # the proxy trained on the sample only
    assert sample_rows(200, 500, 3) is None and sample_rows(200, None, 3) is None  # all of them


def test_difficulty_sample_is_absent_from_the_fingerprint_when_unset(tmp_path) -> None:
    """Adding the option changed no earlier build's id; setting it changes the score stage's."""
    from pipeline.recipe import load_recipe
    from tests.golden import small_recipe

    recipe = load_recipe(small_recipe("tinystories", tmp_path))
    assert "sample" not in recipe.fingerprint_payload()["difficulty"]
    sampled = recipe.model_copy(update={"difficulty": recipe.difficulty.model_copy(update={"sample": 500})})
    assert sampled.fingerprint_payload()["difficulty"]["sample"] == 500 and sampled.build_id != recipe.build_id
