"""``[difficulty]`` (proxy-model scores) and ``[prospect]`` (one-shot prospecting): docs/difficulty.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.config import FileWhenEnabled, Section
from pipeline.paths import PROSPECT_TASKS_FILE


class DifficultyConfig(Section):
    """Proxy-model difficulty scores (see docs/difficulty.md)."""

    enabled: bool = True
    epochs: int = Field(3, ge=1, le=100)
    checkpoints_per_epoch: int = Field(2, ge=1, le=100, description="loss snapshots per epoch (trajectory points)")
    vocab_size: int = Field(2048, ge=300, le=65536, description="BPE vocabulary trained on the records")
    d_model: int = Field(128, ge=16, le=4096)
    n_layers: int = Field(4, ge=1, le=64)
    n_heads: int = Field(4, ge=1, le=64)
    seq_len: int = Field(256, ge=16, le=8192)
    batch_size: int = Field(16, ge=1, le=4096)
    lr: float = Field(3e-3, gt=0.0, le=1.0)
    warmup: float = Field(0.03, ge=0.0, lt=1.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    s2l_clusters: int = Field(8, ge=1, le=10_000)
    s2l_budget: float = Field(0.5, gt=0.0, le=1.0, description="share of records the S2L subset keeps")
    ifd: bool = Field(True, description="IFD / IC-IFD with a pretrained small model")
    ifd_model: str = Field("smollm2-135m-instruct", description="a shipped model name or a .gguf path")
    sample: int | None = Field(
        None, ge=100, le=100_000_000, description="score a random sample of this many records, drawn with the "
        "recipe's seed; the others get null scores (default: every record; on 2 CPU cores the proxy costs "
        "35 ms a short record and about 230 ms of one core a story: docs/difficulty.md)")

    @model_validator(mode="after")
    def _heads(self) -> DifficultyConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        return self


class ProspectConfig(Section):
    """One-shot prospecting (docs/difficulty.md#one-shot-prospecting): how much each record helps the
    embedded model as the one example before a fixed task set."""

    enabled: bool = False
    model: str = Field("smollm2-135m-instruct", description="a shipped model name or a .gguf path")
    tasks: FileWhenEnabled = Field(PROSPECT_TASKS_FILE, description="the task set, JSON lines of instruction and "
                                   "response (default: 12 shipped original tasks)")
    sample: int | None = Field(None, ge=1, le=100_000_000, description="score a random sample of this many "
                               "records, drawn with the recipe's seed (the same as [difficulty] sample's for "
                               "the same size); the others get null (default: every record)")
