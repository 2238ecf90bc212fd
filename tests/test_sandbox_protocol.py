"""The result channel: every program gets its own result, whatever another program does.

- a program whose reply the host cannot use (a result nested 100,000 deep,
  or just below the parser's recursion limit; bytes that are not JSON; a
  forged report)
  gets `error` itself, and the honest programs around it on the same worker,
  queued or later, still get their own values;
- a reply that is out of step with its request (wrong id, malformed, too
  large, missing) costs only the program it was for: the worker is restarted
  and what was queued behind it is sent again (a scripted fake worker);
- a program cannot read the programs queued behind it, nor what earlier ones
  wrote, anywhere in its memory;
- a 256 MB result or output ends that program as `output_exceeded` and does
  not grow the worker.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.sandbox import Sandbox
from pipeline.sandbox import sandbox as sandbox_module
from tests.test_sandbox import worker_pids

# A result the worker's child may build (it can raise its own recursion limit) and json.dumps in C.
DEEP_RESULT = "import sys\nsys.setrecursionlimit(1_000_000)\nx = []\nfor _ in range(100_000):\n    x = [x]\nresult = x"


def raw_report(payload: str) -> str:
    """A program that writes its own report straight to the result pipe (fd 3) and leaves."""
    return f"import os\nos.write(3, {payload!r}.encode())\nos._exit(0)"


ATTACKS = {
    "deep result": DEEP_RESULT,
    "deep raw report": raw_report('{"status": "ok", "value": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "garbage report": raw_report("\x00\xff not json {{{"),
    "wrong shape": raw_report('[1, 2, 3]'),
    "two reports": "result = 1\nimport os\nos.write(3, b'{\"status\": \"ok\", \"value\": 666}')",
}
# Just under the recursion limit: a parser near the bottom of its stack (a worker) reads it, one a
# few frames deeper (the host's reader thread) fails. Which depth does depends on the stacks, so sweep.
ATTACKS.update({f"report {d} deep": raw_report('{"status": "ok", "value": ' + "[" * d + "]" * d + "}")
                for d in range(980, 1000)})


def honest(i: int) -> str:
    return f"result = {{'program': {i}, 'square': {i} * {i}}}"


def assert_honest(results, indices) -> None:
    for i in indices:
        r = results[i]
        assert r.ok and r.value == {"program": i, "square": i * i}, (i, r)


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=1, timeout_s=10.0, memory_mb=512) as sb:
        yield sb


# --- 4. a result channel that cannot be poisoned -----------------------------------------------------------


def test_attackers_among_honest_programs_in_run_many(sb) -> None:
    programs, attackers = [], {}
    for name, code in ATTACKS.items():
        programs += [honest(len(programs)), honest(len(programs) + 1)]
        attackers[len(programs)] = name
        programs.append(code)
    for _ in range(3):
        programs.append(honest(len(programs)))
    for _ in range(2):  # and again, on the same worker
        results = sb.run_many(programs, depth=4)
        assert_honest(results, [i for i in range(len(programs)) if i not in attackers])
        for i, name in attackers.items():
            assert results[i].status == "error", (name, results[i])
            assert results[i].value is None
    assert sb.run("result = 'after'").value == "after"


@pytest.mark.parametrize("attack", [a for a in ATTACKS if not a.endswith(" deep")] + ["report 992 deep"])
def test_an_attacker_in_run_does_not_shift_later_results(sb, attack: str) -> None:
    assert sb.run(ATTACKS[attack]).status == "error"
    for i in range(3):
        r = sb.run(honest(i))
        assert r.ok and r.value == {"program": i, "square": i * i}, r


def test_run_many_with_an_attacker_then_run(sb) -> None:
    """The reported symptom: after run_many met an attacker, later run() calls got other programs' results."""
    for d in range(984, 1000, 3):
        results = sb.run_many([honest(0), ATTACKS[f"report {d} deep"], honest(2), honest(3), honest(4)], depth=4)
        assert_honest(results, [0, 2, 3, 4])
        assert [sb.run(honest(i)).value["program"] for i in (10, 11, 12)] == [10, 11, 12]


def test_a_deep_but_legal_result_still_comes_back(sb) -> None:
    r = sb.run("x = 0\nfor _ in range(100):\n    x = [x]\nresult = x")
    assert r.ok, r
    depth, v = 0, r.value
    while isinstance(v, list):
        v, depth = v[0], depth + 1
    assert depth == 100


FAKE_WORKER = r'''
"""A worker that speaks the protocol and misbehaves on request (the code says how)."""
import json, os, struct, sys, time
HEAD = struct.Struct("!II")

def read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(0, n - len(buf))
        if not chunk:
            sys.exit(0)
        buf += chunk
    return buf

def send(header, body=b""):
    raw = json.dumps(header).encode() if isinstance(header, dict) else header
    os.write(1, HEAD.pack(len(raw), len(body)) + raw + body)

hlen, blen = HEAD.unpack(read_exact(HEAD.size))  # the host's startup frame: config, then the worker's code
read_exact(hlen + blen)
send({"ready": True, "pid": os.getpid()})
while True:
    hlen, blen = HEAD.unpack(read_exact(HEAD.size))
    req = json.loads(read_exact(hlen))
    code = read_exact(blen).decode()
    report = json.dumps({"status": "ok", "error": None, "value": code, "value_repr": None}).encode()
    reply = {"id": req["id"], "verdict": None, "note": None, "duration_s": 0.0, "cpu_s": 0.0, "exit_code": 0,
             "signal": None, "report": "sealed", "stdout": 0, "stderr": 0, "result": len(report)}
    if code == "WRONG ID":
        reply["id"] += 1000
    elif code == "STALE ID":
        reply["id"] -= 1
    elif code == "BAD HEADER":
        send(b"{not json", report)
        continue
    elif code == "BAD SHAPE":
        reply["stdout"] = 5
    elif code == "HUGE":
        os.write(1, HEAD.pack(10, 1 << 30))
        continue
    elif code == "DIE":
        os._exit(1)
    elif code == "HANG":
        time.sleep(3600)
    send(reply, report)
'''


def test_replies_out_of_step_cost_only_their_own_program(tmp_path: Path, monkeypatch) -> None:
    """The host's side alone, against a scripted worker: each kind of bad reply makes its program fail,
    the worker is restarted, and every program queued behind it gets its own answer."""
    fake = tmp_path / "fake_worker.py"
    fake.write_text(FAKE_WORKER)
    monkeypatch.setattr(sandbox_module._Worker, "command", lambda self: [sys.executable, str(fake)])
    monkeypatch.setattr(sandbox_module, "_GRACE_S", 2.0)  # a hang is 2 s past the wall clock: generous, not slow
    bad = {"WRONG ID": "error", "STALE ID": "error", "BAD HEADER": "error", "BAD SHAPE": "error",
           "HUGE": "output_exceeded", "DIE": "killed", "HANG": "killed"}
    programs = []
    for name in bad:
        programs += [f"honest {len(programs)}", name, f"honest {len(programs) + 1}"]
    with Sandbox(workers=1, timeout_s=0.5) as box:
        results = box.run_many(programs, depth=4)
        for program, r in zip(programs, results, strict=True):
            if program in bad:
                assert r.status == bad[program] and r.value is None, (program, r)
            else:
                assert r.ok and r.value == program, (program, r)
        for program in bad:
            assert box.run(program).status == bad[program]
            assert box.run("after").value == "after"


# --- 5. programs must not see the queue, nor what came before ----------------------------------------------

SNOOP = r'''
import gc, os, select, sys, ctypes
prefix = "tinyforge-" + "secret-"
found = []

def look(text):
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("latin-1")
    if isinstance(text, str):
        at = text.find(prefix)
        while at >= 0:
            found.append(text[at:at + len(prefix) + 32])
            at = text.find(prefix, at + 1)

try:  # what the inherited stdin object has buffered
    look(sys.stdin.buffer.peek(1 << 20))
    look(sys.stdin.buffer.read1(1 << 20))
except Exception:
    pass
try:  # the descriptor itself
    if select.select([0], [], [], 0.2)[0]:
        look(os.read(0, 1 << 20))
except OSError:
    pass
for obj in gc.get_objects():  # every live object the interpreter tracks, and what they refer to
    try:
        for ref in gc.get_referents(obj):
            look(ref)
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                look(k), look(v)
    except Exception:
        pass
frame = sys._getframe()
while frame is not None:  # the worker's own frames, below the program's
    for v in list(frame.f_locals.values()):
        look(v)
        if isinstance(v, (list, tuple)) and v is not found:
            for x in list(v):
                look(x)
    frame = frame.f_back
chunk = bytearray(1 << 20)
with open("/proc/self/maps") as f:
    maps = f.read().splitlines()
for line in maps:  # every readable, writable private page of this process: the heap the worker left
    fields = line.split()
    start, end = (int(x, 16) for x in fields[0].split("-"))
    if not fields[1].startswith("rw") or (len(fields) > 5 and fields[5].startswith("[v")):
        continue
    for at in range(start, end, len(chunk)):
        n = min(len(chunk), end - at)
        ctypes.memmove((ctypes.c_char * len(chunk)).from_buffer(chunk), at, n)
        if chunk.find(b"tinyforge-secret-", 0, n) >= 0:
            look(bytes(chunk[:n]))
result = sorted(set(found))
'''


def secret_program(secret: str) -> str:
    return f"secret = {secret!r}\nprint(secret)\nresult = [secret, secret[::-1]]"


def test_the_snooper_finds_a_secret_that_is_there(sb) -> None:
    """The control: with the secret in its own memory, every way of looking finds it."""
    secret = "tinyforge-secret-" + uuid.uuid4().hex
    r = sb.run(f"hidden = [{secret!r}]\n" + SNOOP)
    assert r.ok and any(secret in f for f in r.value), r
    only_memory = SNOOP.replace("for obj in gc.get_objects():", "for obj in []:").replace(
        "while frame is not None:", "while False:")
    r = sb.run(f"hidden = bytearray({secret.encode()!r})\n" + only_memory)
    assert r.ok and any(secret in f for f in r.value), r


def test_a_program_cannot_read_the_programs_queued_behind_it(sb) -> None:
    secret = "tinyforge-secret-" + uuid.uuid4().hex
    programs = [SNOOP] + [secret_program(secret)] * 4 + [SNOOP] + [secret_program(secret)] * 3
    for depth in (2, 4, 8):
        results = sb.run_many(programs, depth=depth)
        for i in (0, 5):
            assert results[i].ok, results[i]
            assert not any(secret[len("tinyforge-secret-"):] in f for f in results[i].value), results[i].value
        assert all(r.ok and r.value[0] == secret for k, r in enumerate(results) if k not in (0, 5))


def test_a_program_cannot_read_what_earlier_programs_wrote(sb) -> None:
    secret = "tinyforge-secret-" + uuid.uuid4().hex
    for _ in range(3):
        r = sb.run(secret_program(secret))
        assert r.ok and r.stdout == secret + "\n"
    snoop = sb.run(SNOOP)
    assert snoop.ok, snoop
    assert not any(secret[len("tinyforge-secret-"):] in f for f in snoop.value), snoop.value


# --- 6. every byte stream is capped -----------------------------------------------------------------------------


def peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


BIG = 256 << 20
FLOODS = {
    "result as a 256 MB string": f"result = 'x' * {BIG}",
    "result pipe, 256 MB raw": ("import os\nchunk = b'x' * (1 << 20)\nos.write(3, b'\"')\n"
                                f"for _ in range({BIG >> 20}):\n    os.write(3, chunk)"),
    "stdout, 256 MB": f"import sys\nchunk = b'x' * (1 << 20)\nfor _ in range({BIG >> 20}):\n    sys.stdout.buffer.write(chunk)",
    "stderr, 256 MB": f"import os\nchunk = b'x' * (1 << 20)\nfor _ in range({BIG >> 20}):\n    os.write(2, chunk)",
}


def test_a_256_mb_result_or_output_is_output_exceeded_and_the_worker_stays_small() -> None:
    with Sandbox(workers=1, timeout_s=20.0, memory_mb=1024) as box:
        assert box.run("result = 1").ok
        (worker,) = worker_pids(box)
        before = peak_rss_kb(worker)
        for name, code in FLOODS.items():
            r = box.run(code)
            assert r.status == "output_exceeded", (name, r)
            assert r.value is None and len(r.stdout) + len(r.stderr) <= 64_000, name
            assert box.run("result = 2").value == 2
        assert worker_pids(box) == [worker]  # the same worker throughout: none was restarted
        assert peak_rss_kb(worker) < before + 16 * 1024, (before, peak_rss_kb(worker))


def test_a_result_over_the_limit_but_legal_json_is_output_exceeded(sb) -> None:
    r = sb.run("result = ['y' * 1000] * 2000")  # ~2 MB as JSON, over the 1 MB default
    assert r.status == "output_exceeded" and r.value is None, r
    assert json.dumps(sb.run("result = ['y' * 1000] * 500").value).count("y") == 500_000
