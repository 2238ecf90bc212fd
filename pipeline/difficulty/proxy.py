"""A small causal language model trained on the build's own records, and its loss trajectories.

The proxy model is the instrument: what matters is how the loss on each
record falls while the model learns the corpus. Records are trained as
``instruction + response``; losses count the response tokens only (S2L and
learning percentage both measure the response). Per record we record the mean
token loss before training and at ``checkpoints_per_epoch`` evenly spaced
points of every epoch.

The tokenizer is a byte-level BPE trained on the same records with
``tokenizers`` (nothing is downloaded). Everything is seeded.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.difficulty.config import DifficultyConfig


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<bos>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    return tok


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True, bias=False)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """A GPT-style decoder: token + position embeddings, pre-norm blocks, tied output."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int, seq_len: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq_len, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.register_buffer("mask", torch.triu(torch.full((seq_len, seq_len), float("-inf")), 1), persistent=False)
        # GPT-2's small init: an untrained model starts near the uniform loss ln(vocab),
        # so perplexities (and learning percentage) start from a meaningful P0.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))
        for block in self.blocks:
            x = block(x, self.mask[:t, :t])
        return self.ln(x) @ self.tok.weight.T

    @property
    def parameters_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass
class Trajectories:
    losses: np.ndarray  # (records, checkpoints) mean response-token loss; column 0 is before training
    epoch_columns: list[int]  # the columns taken at the end of each epoch
    tokens: np.ndarray  # response tokens per record
    stats: dict = field(default_factory=dict)


def _encode(tok, pairs: Sequence[tuple[str, str]], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (padded) and a mask of the response tokens that count for the loss."""
    bos, pad = tok.token_to_id("<bos>"), tok.token_to_id("<pad>")
    ids = torch.full((len(pairs), seq_len), pad, dtype=torch.long)
    target_mask = torch.zeros((len(pairs), seq_len), dtype=torch.bool)
    for i, (instruction, response) in enumerate(pairs):
        q = tok.encode(instruction + "\n").ids if instruction else []
        a = tok.encode(response).ids
        seq = ([bos] + q + a)[:seq_len]
        ids[i, : len(seq)] = torch.tensor(seq)
        start = 1 + len(q)
        target_mask[i, start : len(seq)] = True  # position p predicts token p from tokens < p
    return ids, target_mask


def _trim(x: torch.Tensor, m: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the padding columns every row of a batch has: no compute on them."""
    keep = int((x != pad).sum(1).max()) if len(x) else 0
    return x[:, : max(keep, 2)], m[:, : max(keep, 2)]


def _record_losses(model: TinyLM, ids: torch.Tensor, mask: torch.Tensor, batch: int, device: str,
                   pad: int = 0) -> np.ndarray:
    model.eval()
    out = np.zeros(len(ids), dtype=np.float64)
    with torch.no_grad():
        for s in range(0, len(ids), batch):
            x, m = _trim(ids[s : s + batch], mask[s : s + batch], pad)
            x, m = x.to(device), m.to(device)
            logits = model(x[:, :-1])
            nll = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
            mm = m[:, 1:].float()
            out[s : s + batch] = ((nll * mm).sum(1) / mm.sum(1).clamp(min=1)).cpu().numpy()
    model.train()
    return out


def resolve_device(choice: str) -> str:
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def loss_trajectories(pairs: Sequence[tuple[str, str]], cfg: DifficultyConfig, seed: int) -> Trajectories:
    """Train the proxy on ``(instruction, response)`` pairs; return every record's loss trajectory."""
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = resolve_device(cfg.device)
    tok = train_tokenizer([q + "\n" + a for q, a in pairs], cfg.vocab_size)
    ids, mask = _encode(tok, pairs, cfg.seq_len)
    pad = tok.token_to_id("<pad>")
    model = TinyLM(tok.get_vocab_size(), cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.seq_len).to(device)
    steps_per_epoch = math.ceil(len(pairs) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(total * cfg.warmup))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
    # Snapshot steps within an epoch; with fewer steps than snapshots a step is
    # recorded more than once, so every build's trajectories have the same length.
    marks = Counter(max(1, math.ceil(steps_per_epoch * (k + 1) / cfg.checkpoints_per_epoch))
                    for k in range(cfg.checkpoints_per_epoch))

    score_seconds = 0.0

    def snapshot() -> np.ndarray:
        nonlocal score_seconds
        t = time.perf_counter()
        losses = _record_losses(model, ids, mask, cfg.batch_size * 4, device, pad)
        score_seconds += time.perf_counter() - t
        return losses

    columns = [snapshot()]
    epoch_columns, trained_tokens = [], 0
    t_train = time.perf_counter()
    for _ in range(cfg.epochs):
        order = rng.permutation(len(pairs))
        for step in range(1, steps_per_epoch + 1):
            batch = torch.as_tensor(order[(step - 1) * cfg.batch_size : step * cfg.batch_size])
            x, m = _trim(ids[batch], mask[batch], pad)
            x, m = x.to(device), m.to(device)
            logits = model(x[:, :-1])
            nll = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
            loss = (nll * m[:, 1:]).sum() / m[:, 1:].sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            trained_tokens += int((x != pad).sum())
            if step in marks:
                columns.extend([snapshot()] * marks[step])
        epoch_columns.append(len(columns) - 1)
    seconds = time.perf_counter() - t_start
    train_seconds = time.perf_counter() - t_train - score_seconds
    real_tokens = int((ids != pad).sum())
    snapshots = len({id(c) for c in columns})
    return Trajectories(
        losses=np.stack(columns, axis=1),
        epoch_columns=epoch_columns,
        tokens=mask.sum(1).numpy(),
        stats={"device": device, "parameters": model.parameters_count, "vocab": tok.get_vocab_size(),
               "records": len(pairs), "epochs": cfg.epochs, "checkpoints": len(columns),
               "trained_tokens": trained_tokens, "seconds": round(seconds, 2),
               "train_tokens_per_s": round(trained_tokens / train_seconds, 1) if train_seconds else None,
               "scored_tokens": real_tokens * snapshots,
               "score_tokens_per_s": round(real_tokens * snapshots / score_seconds, 1) if score_seconds else None},
    )
