"""IFD and IC-IFD (Li et al. 2024 Cherry LLM; "Smaller Language Models Are Better Instruction Evolvers").

With a pretrained small model (the embedded SmolLM2-135M by default), per
instruction ``Q`` and response ``A``, as mean token cross-entropies:

    IFD(Q, A)    = L(A | Q) / L(A)          how much the instruction helps
    IC-IFD(Q, A) = IFD(Q, A) / L(Q)          the same, discounted by how hard Q itself is

A high IFD means the instruction barely helps the model predict the
response: the pair is hard to follow. IC-IFD keeps long, unusual
instructions from looking hard only because they are surprising.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import UserError


@dataclass(frozen=True)
class IFDScores:
    ifd: np.ndarray
    ic_ifd: np.ndarray
    loss_a_given_q: np.ndarray
    loss_a: np.ndarray
    loss_q: np.ndarray


class LlamaScorer:
    """Token losses from a GGUF model through llama.cpp (logits for every position)."""

    def __init__(self, model: str = "smollm2-135m-instruct", n_ctx: int = 2048, n_threads: int | None = None):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise UserError("IFD scoring needs llama-cpp-python (pip install -e '.[embedded]')") from None
        from pipeline.llm.llamacpp import resolve_model_path

        self.n_ctx = n_ctx
        self._llm = Llama(model_path=str(resolve_model_path(model)), n_ctx=n_ctx, n_threads=n_threads,
                          logits_all=True, verbose=False)

    def start(self) -> list[int]:
        """The token a scored sequence starts from: the model's BOS (SmolLM2's tokenizer adds none itself)."""
        bos = self._llm.token_bos()
        return [bos] if bos >= 0 else self.tokens("\n", bos=False)

    def tokens(self, text: str, bos: bool) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False)

    def losses(self, tokens: list[int]) -> np.ndarray:
        """Cross-entropy of each token after the first, given the ones before it."""
        tokens = tokens[: self.n_ctx]
        self._llm.reset()
        self._llm.eval(tokens)
        return _cross_entropy(self._llm.scores[: len(tokens) - 1], tokens[1:])


    def continuation_losses(self, prefix: list[int], continuations: Sequence[list[int]]) -> list[np.ndarray]:
        """Each continuation's token losses after one shared ``prefix``, which is evaluated once: the
        cache past it is dropped before each continuation (llama.cpp's ``eval`` removes what lies beyond
        ``n_tokens``)."""
        room = self.n_ctx - len(prefix)
        if room < max((len(c) for c in continuations), default=0):
            raise ValueError(f"a prefix of {len(prefix)} tokens leaves no room for its continuations")
        self._llm.reset()
        self._llm.eval(prefix)
        out = []
        for cont in continuations:
            self._llm.n_tokens = len(prefix)
            self._llm.eval(cont)
            # position p's logits predict token p + 1: the prefix's last position predicts cont[0]
            out.append(_cross_entropy(self._llm.scores[len(prefix) - 1 : len(prefix) - 1 + len(cont)], cont))
        return out


def _cross_entropy(scores: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """Each row's cross-entropy of its target token, from raw logits (a stable log-sum-exp)."""
    logits = np.asarray(scores, dtype=np.float64)
    top = logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
    return lse - logits[np.arange(len(targets)), targets]


def ifd_scores(pairs: Sequence[tuple[str, str]], scorer: LlamaScorer) -> IFDScores:
    lag, la, lq = [], [], []
    bos = scorer.tokens("", bos=True)
    for instruction, response in pairs:
        q = scorer.tokens(instruction + "\n", bos=True)
        a = scorer.tokens(response, bos=False)
        joint = scorer.losses(q + a)
        lag.append(joint[len(q) - 1 : len(q) - 1 + len(a)].mean() if a else np.nan)
        lq.append(joint[: len(q) - 1].mean() if len(q) > 1 else np.nan)
        la.append(scorer.losses(bos + a).mean() if a else np.nan)
    lag, la, lq = np.array(lag), np.array(la), np.array(lq)
    with np.errstate(divide="ignore", invalid="ignore"):
        ifd = lag / la
        ic = ifd / lq
    return IFDScores(ifd, ic, lag, la, lq)
