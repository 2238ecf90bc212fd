"""An OpenAI-compatible chat server on 127.0.0.1 that answers at once with a plausible story.

It exists to measure what the pipeline itself costs: the model is taken out of
the picture, so every second and every byte a build spends is tinyforge's.
It is a real HTTP/1.1 server (keep-alive, Content-Length bodies, the
``/v1/chat/completions`` and ``/v1/models`` routes) in its own process, so its
CPU is never counted as the client's.

A reply is a short story built from the vocabulary in ``data/vocab``: the
prompt's three words, the sentence it asks for (TinyStories-Instruct), and
seven or so sentences drawn with the request's ``seed``, so replies pass the
story filters and are distinct enough for dedup to keep nearly all of them.
A summary request gets one sentence. ``--delay-ms`` holds every answer that
long, so requests pile up in flight; ``GET /stats`` reports how many requests
were answered, how many distinct (prompt, seed) pairs, and the most that were
ever in flight at once.

    python -m tests.instant_server --port 8000 [--delay-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

VOCAB = Path(__file__).resolve().parents[1] / "data" / "vocab"
_WORDS = re.compile(r'Words to use: "([^"]+)", "([^"]+)", "([^"]+)"')
_SENTENCE = re.compile(r'contain this exact sentence: "([^"]+)"')

TEMPLATES = (
    "One day, {name} went to the {place} with a {adj} {noun}.",
    "{name} liked to {verb} every morning.",
    "The {noun} was very {adj}, and {name} smiled.",
    "{name} and {friend} wanted to {verb} together.",
    "Mom said, \"Be careful with the {noun}!\"",
    "They saw a {adj} {noun} near the {place}.",
    "{friend} did not want to {verb}, so {name} helped.",
    "At the end of the day, they were happy and tired.",
    "The sun was warm and the {noun} was {adj}.",
    "{name} gave the {noun} to {friend}.",
    "\"Can we {verb} now?\" asked {friend}.",
    "{name} learned that it is good to share.",
    "Then a little {noun} came to the {place}.",
    "{friend} laughed and ran to the {place}.",
)


def _lemmas(name: str) -> list[str]:
    lines = (VOCAB / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


class Storyteller:
    def __init__(self) -> None:
        self.nouns, self.verbs, self.adjs = _lemmas("nouns"), _lemmas("verbs"), _lemmas("adjectives")
        self.names = [n.capitalize() for n in _lemmas("names")]
        self.places = [p for p in ("park", "garden", "house", "school", "beach", "forest", "farm", "lake")
                       if p in set(self.nouns)] or self.nouns[:8]

    def reply(self, prompt: str, seed: int) -> str:
        rng = random.Random(seed)
        name, friend = rng.sample(self.names, 2)
        if prompt.startswith("Here is a story"):
            return f"{name} and {friend} had a happy day together."
        verb, noun, adj = (m.groups() if (m := _WORDS.search(prompt))
                           else (rng.choice(self.verbs), rng.choice(self.nouns), rng.choice(self.adjs)))
        fill = {"name": name, "friend": friend, "place": rng.choice(self.places)}
        lines = [TEMPLATES[0].format(adj=adj, noun=noun, **fill), f"{name} wanted to {verb} all day."]
        for template in rng.sample(TEMPLATES[1:], 7):
            lines.append(template.format(noun=rng.choice(self.nouns), verb=rng.choice(self.verbs),
                                         adj=rng.choice(self.adjs), **fill))
        if m := _SENTENCE.search(prompt):
            lines.insert(rng.randint(1, len(lines)), m.group(1))
        return " ".join(lines)


class Server(asyncio.Protocol):
    """One connection; requests on it are answered in order (HTTP/1.1 keep-alive)."""

    teller: Storyteller
    delay_s = 0.0
    answered = 0
    in_flight = 0
    max_in_flight = 0
    seen: set[bytes] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                key, _, value = line.partition(":")
                if key.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.handle(head.split(" ", 2)[1], body)

    def handle(self, path: str, body: bytes) -> None:
        cls = type(self)
        if path.endswith("/stats"):
            return self.send(json.dumps({"answered": cls.answered, "distinct": len(cls.seen),
                                         "max_in_flight": cls.max_in_flight}).encode())
        if not path.endswith("/chat/completions"):
            return self.send(json.dumps({"object": "list", "data": [{"id": "instant", "object": "model"}]}).encode())
        request = json.loads(body)
        prompt = request["messages"][-1]["content"]
        seed = int(request.get("seed") or 0)
        cls.seen.add(hashlib.blake2b(f"{seed}\0{prompt}".encode(), digest_size=16).digest())
        text = cls.teller.reply(prompt, seed)
        words = len(text.split())
        reply = json.dumps({
            "id": f"cmpl-{cls.answered}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "instant"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": words,
                      "total_tokens": len(prompt) // 4 + words},
        }).encode()
        cls.in_flight += 1
        cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        if cls.delay_s:
            asyncio.get_running_loop().call_later(cls.delay_s, self.answer, reply)
        else:
            self.answer(reply)

    def answer(self, reply: bytes) -> None:
        cls = type(self)
        cls.in_flight -= 1
        cls.answered += 1
        self.send(reply)

    def send(self, body: bytes) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def serve(port: int, delay_ms: float) -> None:
    Server.teller, Server.delay_s = Storyteller(), delay_ms / 1000
    server = await asyncio.get_running_loop().create_server(Server, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def instant_server(delay_ms: float = 0.0, startup_s: float = 30.0) -> Iterator[str]:
    """Start the server in a child process, yield its base URL (``http://127.0.0.1:PORT/v1``), stop it."""
    from tests.servers import free_port, serving

    port = free_port()
    with serving([sys.executable, "-m", "tests.instant_server", "--port", str(port), "--delay-ms", str(delay_ms)],
                 f"http://127.0.0.1:{port}/v1", "the instant server", startup_s,
                 cwd=str(Path(__file__).resolve().parents[1])) as url:
        yield url


def server_stats(url: str) -> dict[str, int]:
    return json.loads(urllib.request.urlopen(f"{url}/stats", timeout=10).read())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    args = ap.parse_args()
    asyncio.run(serve(args.port, args.delay_ms))


if __name__ == "__main__":
    main()
