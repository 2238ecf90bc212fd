"""The embedded CPU engine: batched llama.cpp decoding on every core.

One llama.cpp stream decodes one token at a time, so every token pays for
reading all the weights and for every per-call overhead. This engine, driven
through the low-level API of llama-cpp-python, gets about twice the output
tokens/s of one stream on the project's 2-core machines (docs/benchmarks.md):

* **parallel slots with continuous batching**: up to ``parallel`` samples are
  decoded in one ``llama_decode`` call, and a finished slot takes the next
  sample at once (llama.cpp's own ``llama-server -np N -cb``);
* **float16 weights** for small models, whose kernels are faster here than
  the 4-bit ones and hold the same model (:mod:`pipeline.llm.weights`);
* **one context per core** ("engines"), each single-threaded, each on its own
  Python thread (llama.cpp releases the GIL while it decodes), sharing one
  copy of the weights; a call's samples are dealt to them in turn. When one
  context runs out of work, the others take its cores for the tail of the call.

Each slot has its own KV stream (``kv_unified = false``), so a token attends
over its own sequence only; with a unified cache every token attends over all
slots' cells, which cost more than it saved. Prompts still share their common
prefix: a new sample copies the stream of a slot that already evaluated the
longest matching prefix, trims it, and evaluates only the rest. Few-shot
prompts share hundreds of tokens.

Every sample is drawn with its own sampler chain seeded by ``sample_seed``.
Which samples share a decode batch still changes the float rounding of the
logits, and now and then a sampled token, so batches are made deterministic:
samples are dealt to contexts by position and the KV cache starts empty at
every call. A call's texts then depend only on its requests and the number
of contexts: the same on every run, under any load, on any runner. A request
with a JSON schema is constrained by a llama.cpp grammar made from it.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pipeline.errors import UserError
from pipeline.fingerprint import file_sha256
from pipeline.llm.llamacpp import lowlevel, resolve_model_path
from pipeline.llm.types import ChatRequest, Completion, OnDone, sample_seed
from pipeline.llm.weights import Weights, engine_weights

L = lowlevel()
_TOP_K, _MIN_P, _PENALTY_LAST_N = 40, 0.05, 64


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


@dataclass(frozen=True, slots=True)
class _Job:
    request: int  # index in the batch of requests
    sample: int  # sample index within the request
    prompt: tuple[int, ...]
    stop: tuple[str, ...]
    max_tokens: int
    temperature: float
    top_p: float
    repeat_penalty: float
    seed: int
    grammar: str | None = None  # GBNF, from the request's JSON schema


@dataclass
class _Slot:
    job: _Job
    sampler: int  # llama_sampler pointer
    tokens: list[int]  # prompt tokens still to feed (first step), then nothing
    pos: int = 0
    out: list[int] = field(default_factory=list)
    text: bytes = b""
    logit_index: int = -1
    finish: str | None = None


class _Call:
    """One ``generate`` call: its samples, dealt to the engines in turn, and the CPU threads, split
    among the engines still working (the last one to finish gets them all).

    Dealt, not taken from a shared queue as engines have room: which samples share a llama_decode
    batch changes the float rounding of their logits, and so, now and then, a sampled token. Dealt
    samples make a call's texts depend on its requests alone, never on timing, so a build's records
    are the same on any run, runner or load (the cores a finished engine leaves go to the others).
    """

    def __init__(self, jobs: list[_Job], threads: int, engines: int):
        self._queues = [deque(jobs[e::engines]) for e in range(engines)]
        self._threads, self._working = threads, engines
        self._lock = threading.Lock()

    def take(self, engine: int, k: int) -> list[_Job]:
        with self._lock:
            queue = self._queues[engine]
            return [queue.popleft() for _ in range(min(k, len(queue)))]

    def cancel(self) -> None:
        """Stop handing out work: one engine failed, so the call fails; the others finish their slots."""
        with self._lock:
            for queue in self._queues:
                queue.clear()

    def threads(self) -> int:
        with self._lock:
            return max(1, self._threads // max(1, self._working))

    def leave(self) -> None:
        with self._lock:
            self._working -= 1


class _Model:
    """The weights, tokenizer and chat template, loaded once and shared by every context."""

    def __init__(self, path: str):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.ptr = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
        if not self.ptr:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.vocab = L.llama_model_get_vocab(self.ptr)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        template = self._meta("tokenizer.chat_template")
        if not template:
            raise RuntimeError(f"{path} has no chat template")
        self.formatter = Jinja2ChatFormatter(
            template=template, eos_token=self._token_text(L.llama_vocab_eos(self.vocab)),
            bos_token=self._token_text(L.llama_vocab_bos(self.vocab)))

    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(65536)
        n = L.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def _token_text(self, token: int) -> str:
        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", "replace")

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        buf = (L.llama_token * (len(data) + 16))()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, len(buf), True, True)
        if n < 0:
            buf = (L.llama_token * (-n))()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, len(buf), True, True)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[: max(n, 0)]

    def sampler(self, job: _Job) -> int:
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        if job.grammar is not None:  # first: every later step sees only tokens the schema allows
            grammar = L.llama_sampler_init_grammar(self.vocab, job.grammar.encode(), b"root")
            if not grammar:
                raise ValueError("llama.cpp rejected the grammar made from a request's JSON schema")
            L.llama_sampler_chain_add(chain, grammar)
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_penalties(self.n_vocab, _PENALTY_LAST_N,
                                                                         job.repeat_penalty, 0.0, 0.0))
        if job.temperature <= 0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
            return chain
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(_TOP_K))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(job.top_p, 1))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_min_p(_MIN_P, 1))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(job.temperature))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(job.seed & 0xFFFFFFFF))
        return chain

    def close(self) -> None:
        if self.ptr:
            L.llama_model_free(self.ptr)
            self.ptr = None


@functools.lru_cache(maxsize=64)
def _grammar(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema_json)


class _Engine:
    """One llama.cpp context: ``parallel`` slots decoded together, with continuous batching."""

    def __init__(self, model: _Model, n_ctx: int, n_threads: int, parallel: int):
        self.model, self.parallel, self.n_ctx_seq = model, parallel, n_ctx
        cparams = L.llama_context_default_params()
        cparams.n_ctx = n_ctx * parallel
        cparams.n_batch = max(512, n_ctx)
        cparams.n_ubatch = 512
        cparams.n_seq_max = parallel
        # Off: with a KV stream per slot, measured on one core at 16 sequences, decode at position 400
        # runs at 120 tokens/s without flash attention and 109 with it (103 vs 82 at 700).
        cparams.flash_attn_type = 0
        cparams.kv_unified = False  # a stream per slot: each token attends over its own sequence only
        cparams.n_threads = cparams.n_threads_batch = self._threads = n_threads
        self._ctx = L.llama_init_from_model(model.ptr, cparams)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self._mem = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(cparams.n_batch, 0, 1)
        self._batch_cap = cparams.n_batch
        self._cached: list[list[int]] = [[] for _ in range(parallel)]  # the prompt each slot last held
        self._ready = [0] * parallel  # how many of those tokens are evaluated in the KV cache

    def _place(self, i: int, job: _Job, wait: bool) -> _Slot | None:
        """Put ``job`` in sequence ``i``, reusing the longest evaluated prefix; None to wait a step."""
        prompt = list(job.prompt)
        best_j, best = i, min(_common_prefix(self._cached[i], prompt), self._ready[i])
        pending = 0
        for j in range(self.parallel):
            common = _common_prefix(self._cached[j], prompt)
            if j != i and min(common, self._ready[j]) > best:
                best_j, best = j, min(common, self._ready[j])
            if self._ready[j] < len(self._cached[j]):
                pending = max(pending, common)
        if wait and pending > best + 32:
            return None  # a slot opened this step will hold a longer prefix: take it next step
        keep = min(best, len(prompt) - 1)  # the last prompt token must run: its logits sample the first token
        if best_j != i:  # llama.cpp copies only whole streams between slots: copy, then trim
            L.llama_memory_seq_cp(self._mem, best_j, i, -1, -1)
        L.llama_memory_seq_rm(self._mem, i, keep, -1)
        self._cached[i], self._ready[i] = prompt, keep
        return _Slot(job, self.model.sampler(job), prompt[keep:], pos=keep)

    def forget(self) -> None:
        """Empty the KV cache: no later prompt reuses a prefix evaluated before."""
        L.llama_memory_clear(self._mem, True)
        self._cached, self._ready = [[] for _ in range(self.parallel)], [0] * self.parallel

    def run(self, call: _Call, engine: int, deliver) -> None:
        """Decode until this engine's share of ``call`` is done; ``deliver(job, completion)`` each."""
        # A prefix evaluated in an earlier call was evaluated in another batch, with other rounding:
        # reusing it would make this call's texts depend on what ran before. Within a call, prefixes
        # are still shared (the chat template, a few-shot block).
        self.forget()
        slots: list[_Slot | None] = [None] * self.parallel
        try:
            self._run(call, engine, deliver, slots)
        except BaseException:
            for slot in slots:
                if slot is not None:
                    L.llama_sampler_free(slot.sampler)
            self.forget()  # whatever the KV cache holds now is unknown
            raise

    def _run(self, call: _Call, engine: int, deliver, slots: list[_Slot | None]) -> None:
        backlog: deque[_Job] = deque()  # taken from this engine's share, not yet placed
        batch, model = self._batch, self.model
        while True:
            free = [i for i, s in enumerate(slots) if s is None]
            if free and len(backlog) < len(free):
                backlog.extend(call.take(engine, len(free) - len(backlog)))
            opened = False
            for i in free:  # continuous batching: refill free slots
                if not backlog:
                    break
                slot = self._place(i, backlog[0], wait=opened)
                if slot is None:
                    break
                backlog.popleft()
                slots[i], opened = slot, True
            if not any(slots):
                return
            # The tail of a call: once another engine has finished, this one takes its cores too.
            if (threads := call.threads()) != self._threads:
                L.llama_set_n_threads(self._ctx, threads, threads)
                self._threads = threads
            batch.n_tokens = 0
            for i, slot in enumerate(slots):
                if slot is None:
                    continue
                feed = slot.tokens if slot.tokens else [slot.out[-1]]
                if batch.n_tokens + len(feed) > self._batch_cap:
                    continue  # a long prompt waits for the next step
                for k, tok in enumerate(feed):
                    j = batch.n_tokens
                    batch.token[j] = tok
                    batch.pos[j] = slot.pos + k
                    batch.n_seq_id[j] = 1
                    batch.seq_id[j][0] = i
                    batch.logits[j] = k == len(feed) - 1
                    batch.n_tokens += 1
                slot.pos += len(feed)
                slot.logit_index = batch.n_tokens - 1
                if slot.tokens:
                    self._ready[i] = len(self._cached[i])
                slot.tokens = []
            if batch.n_tokens == 0:
                raise RuntimeError("a prompt is longer than the decode batch")
            if L.llama_decode(self._ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            for i, slot in enumerate(slots):
                if slot is None or slot.logit_index < 0:
                    continue
                # sample() also accepts the token into the chain (penalty history, grammar state)
                tok = L.llama_sampler_sample(slot.sampler, self._ctx, slot.logit_index)
                slot.logit_index = -1
                job = slot.job
                if L.llama_vocab_is_eog(model.vocab, tok):
                    slot.finish = "stop"
                else:
                    slot.out.append(tok)
                    slot.text += model.piece(tok)
                    text = slot.text.decode("utf-8", "ignore")
                    if any(s in text for s in job.stop):
                        slot.finish = "stop"
                    elif len(slot.out) >= job.max_tokens:
                        slot.finish = "length"
                if slot.finish:
                    text = slot.text.decode("utf-8", "replace")
                    for s in job.stop:
                        if s in text:
                            text = text[: text.index(s)]
                    L.llama_sampler_free(slot.sampler)
                    slots[i] = None
                    deliver(job, Completion(text, slot.finish, len(job.prompt), len(slot.out)))

    def close(self) -> None:
        if self._ctx:
            L.llama_batch_free(self._batch)
            L.llama_free(self._ctx)
            self._ctx = None


class LlamaCppEngine:
    """The embedded backend: ``engines`` contexts of ``parallel`` slots each, over one copy of the weights."""

    def __init__(self, model: str = "smollm2-135m-instruct", n_ctx: int = 2048, n_threads: int | None = None,
                 parallel: int = 16, engines: int | None = None, weights: Weights = "auto",
                 structured_output: bool = True):
        self.path = resolve_model_path(model)
        # The id names the weights as shipped: a float16 re-encoding is the same model.
        self._model_id = f"llamacpp/{self.path.stem}@{file_sha256(self.path)[:12]}"
        self.threads = cores = n_threads or len(os.sched_getaffinity(0))  # the cores this process may use
        self.engines = engines or cores  # one single-threaded context per core by default
        self.parallel, self.n_ctx_seq, self.structured_output = parallel, n_ctx, structured_output
        self.weights_path = engine_weights(self.path, weights)
        self._model = _Model(str(self.weights_path))
        threads = max(1, cores // self.engines)
        self._engines = [_Engine(self._model, n_ctx, threads, parallel) for _ in range(self.engines)]
        self._pool = ThreadPoolExecutor(self.engines, thread_name_prefix="llamacpp")
        self._lock = threading.Lock()  # one generate() at a time; its samples spread over every engine

    @property
    def model_id(self) -> str:
        return self._model_id

    def _jobs(self, requests: Sequence[ChatRequest]) -> list[_Job]:
        jobs = []
        for ri, request in enumerate(requests):
            formatted = self._model.formatter(messages=[{"role": m.role, "content": m.content}
                                                        for m in request.messages])
            prompt = tuple(self._model.tokenize(formatted.prompt))
            room = self.n_ctx_seq - len(prompt)
            if room <= 0:
                raise UserError(f"backend.n_ctx: a prompt of {len(prompt)} tokens does not fit a context of "
                                f"{self.n_ctx_seq} tokens per sequence; raise backend.n_ctx")
            template_stop = [formatted.stop] if isinstance(formatted.stop, str) else formatted.stop or []
            stop = tuple(request.params.stop) + tuple(s for s in template_stop if s)
            grammar = None
            if self.structured_output and request.json_schema is not None:
                grammar = _grammar(json.dumps(request.json_schema, sort_keys=True))
            p = request.params
            jobs += [_Job(ri, s, prompt, stop, min(p.max_tokens, room), p.temperature, p.top_p, p.repeat_penalty,
                          sample_seed(request.seed, s), grammar) for s in request.sample_indices]
        return jobs

    def generate(self, requests: Sequence[ChatRequest], on_done: OnDone | None = None) -> list[list[Completion]]:
        with self._lock:
            call = _Call(self._jobs(requests), self.threads, self.engines)
            results: list[list[Completion | None]] = [[None] * r.n for r in requests]
            remaining = [r.n for r in requests]
            done = threading.Lock()  # engines deliver from their own threads

            def deliver(job: _Job, completion: Completion) -> None:
                with done:  # callers' on_done (the cache's commit) never runs twice at once
                    results[job.request][job.sample - requests[job.request].first_sample] = completion
                    remaining[job.request] -= 1
                    if remaining[job.request] == 0 and on_done:
                        on_done(job.request, results[job.request])  # type: ignore[arg-type]

            def run(index: int, engine: _Engine) -> None:
                try:
                    engine.run(call, index, deliver)
                except BaseException:
                    call.cancel()
                    raise
                finally:
                    call.leave()

            futures = [self._pool.submit(run, i, e) for i, e in enumerate(self._engines)]
            for f in futures:
                f.result()
            return results  # type: ignore[return-value]

    def close(self) -> None:
        if getattr(self, "_engines", None):
            self._pool.shutdown()
            for e in self._engines:
                e.close()
            self._engines = []
            self._model.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass
