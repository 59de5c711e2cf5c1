"""The probe protocol, host side: lines in, one result per probe test out.

This is the only parser of probe output. The host runner, a guest kernel's
console stream, a bundle's or a remote's stream and a run under an
LD_PRELOAD stack all come through here, so every source gives the same
results. Two layers: the lines of one probe run (parse_line, interpret),
and the framing of a stream of many items that the POSIX sh runner
(runner/sh/run) writes (`item` ... `exit` per item, parse_framed). The
format is in README.md ("Probe protocol").
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field

from . import verdicts
from .records import Item, result_record

VERSION = 1
PREFIX = "@SP%d " % VERSION


@dataclass
class Event:
    kind: str
    fields: dict


def unescape(value: str) -> str:
    """Undo the probe's %XX escaping (bytes, then UTF-8)."""
    if "%" not in value:
        return value
    out = bytearray()
    i = 0
    raw = value.encode("utf-8", "replace")
    while i < len(raw):
        c = raw[i]
        if c == 0x25 and _ishex(raw[i + 1:i + 3]):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return out.decode("utf-8", "replace")


def _ishex(b: bytes) -> bool:
    return len(b) == 2 and all(ch in b"0123456789abcdefABCDEF" for ch in b)


def parse_line(line: str) -> Event | None:
    """One protocol line, or None for anything else (log text, noise).

    The prefix may stand anywhere in the line: a guest console can put a
    kernel message in front of it."""
    at = line.find(PREFIX)
    if at < 0:
        return None
    words = line[at + len(PREFIX):].strip().split(" ")
    if not words or not words[0]:
        return None
    fields = {}
    for word in words[1:]:
        key, eq, val = word.partition("=")
        if not eq or not key:
            return None  # garbled: not a protocol line after all
        fields[key] = unescape(val)
    return Event(words[0], fields)


def parse_stream(text: str) -> tuple[list[Event], list[str]]:
    """Split a probe's output into protocol events and other (log) lines."""
    events, log = [], []
    for line in text.splitlines():
        ev = parse_line(line)
        if ev is None:
            if line.strip():
                log.append(line)
        else:
            events.append(ev)
    return events, log


@dataclass
class TestListing:
    probe: str
    name: str
    ids: list
    families: list  # ["ipv4", "ipv6"] or ["none"]
    slow: float = 0.0  # seconds of wall time the test spends by design (alarm(1))
    bound: float = 0.0  # seconds it may wait where the system deviates (a Must's allowance)


def _seconds(v: str) -> float:
    """The optional `slow` field of a `test` line; anything else is 0."""
    try:
        x = float(v)
    except ValueError:
        return 0.0
    return x if x > 0 and x == x and x != float("inf") else 0.0


def parse_listing(text: str) -> list[TestListing]:
    """What `probe --list` prints."""
    out = []
    events, _ = parse_stream(text)
    for ev in events:
        if ev.kind != "test":
            continue
        f = ev.fields
        if not f.get("name") or not f.get("probe"):
            continue
        out.append(TestListing(
            probe=f["probe"], name=f["name"],
            ids=[i for i in f.get("ids", "").split(",") if i],
            families=[x for x in f.get("families", "none").split(",") if x],
            slow=_seconds(f.get("slow", "")), bound=_seconds(f.get("bound", ""))))
    return out


def parse_env(text: str) -> dict:
    events, _ = parse_stream(text)
    return {ev.fields.get("key", ""): ev.fields.get("value", "")
            for ev in events if ev.kind == "env" and ev.fields.get("key")}


@dataclass
class Outcome:
    """The verdict of one run of one probe test, with what it observed."""
    verdict: str
    message: str
    observations: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    isolation: dict = field(default_factory=dict)
    begin: dict = field(default_factory=dict)
    log: list = field(default_factory=list)
    needs: str = ""   # broken because this catalogue ID's behavior deviates
    paths: dict = field(default_factory=dict)  # calls made: {"in": [...], "out": [...], "wait": [...], "conn": [...]}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "signal %d" % signum


def interpret(text: str, returncode: int | None, timed_out: bool = False,
              timeout_s: float | None = None) -> Outcome:
    """Turn one probe run (its output and how it ended) into an Outcome.

    returncode follows subprocess: negative for death by a signal, None
    when unknown (a guest that only reported the stream)."""
    events, log = parse_stream(text)
    out = Outcome(verdict="error", message="", log=log)
    end = None
    for ev in events:
        f = ev.fields
        if ev.kind == "obs" and "key" in f:
            out.observations[f["key"]] = f.get("value", "")
        elif ev.kind == "fail":
            out.failures.append(f)
        elif ev.kind == "isolation":
            out.isolation = f
        elif ev.kind == "paths":
            out.paths = {k: [c for c in f.get(k, "").split(",") if c]
                         for k in ("in", "out", "wait", "conn") if f.get(k)}
        elif ev.kind == "begin":
            out.begin = f
        elif ev.kind == "end":
            end = f
        elif ev.kind == "skip" and "reason" in f:
            out.observations.setdefault("skip_reason", f["reason"])
        elif ev.kind == "broken" and "reason" in f:
            out.observations.setdefault("broken_reason", f["reason"])
            out.observations.setdefault("broken_at", f.get("at", ""))
            if f.get("needs") and not out.needs:
                out.needs = f["needs"]

    if timed_out:
        out.verdict = "timeout"
        out.message = ("no verdict within %gs; the probe's process group was "
                       "killed" % (timeout_s or 0))
        if end is not None:
            out.message += " (it had printed verdict %s)" % end.get("verdict")
        return out
    if returncode is not None and returncode < 0:
        out.message = "probe killed by %s" % signal_name(-returncode)
        if out.failures:
            out.message += " after a failed check"
        return out
    if returncode is not None and returncode >= 128 + 1 and end is None:
        out.message = "probe ended with status %d (signal %s?)" % (
            returncode, signal_name(returncode - 128))
        return out
    if not out.begin and end is None:
        out.message = ("no protocol output (exit status %s); is this a "
                       "sockprobe probe?" % returncode)
        return out
    if end is None:
        out.message = ("truncated protocol stream: no verdict line "
                       "(exit status %s)" % returncode)
        return out
    verdict = end.get("verdict", "")
    if verdict not in verdicts.PROBE:
        out.message = "unknown verdict %r in the protocol stream" % verdict
        return out
    if verdict == "pass" and returncode not in (0, None):
        out.message = "verdict pass but exit status %d" % returncode
        return out
    out.verdict = verdict
    out.message = end.get("message", "")
    variants = [f["variant"] for f in out.failures if f.get("variant")]
    if verdict == "fail" and variants:
        # the parameter combination that failed (socket kind, calls, ...)
        named = list(dict.fromkeys(variants))
        out.message += "%s(variant %s)" % (" " if out.message else "", ", ".join(named))
    return out


# ---- streams of many items (the POSIX sh runner's framing) ------------------

# The sh runner kills a timed-out item with SIGTERM: status 143 is a timeout.
TIMEOUT_STATUS = 128 + signal.SIGTERM
CUT_SHORT = "the guest stopped during this item (kernel crash or hang?)"


def parse_framed(text: str, item_timeout: float, cut: str | None = CUT_SHORT) -> dict:
    """A framed stream -> {kernel, env, results, done, health}. An item
    that started but never reported an exit (the guest died, the
    connection dropped) is an error with the message `cut`; with cut=None
    (the run was interrupted) it is left out, like the items that never
    started. health: the `health`/`klog` records (runner/health.py)."""
    env, results, health = {}, [], []
    kernel, done = None, False
    cur, lines = None, []
    last = None  # the item that ran last (kernel health names it)

    def close(status):
        nonlocal last
        if status is None and cut is None:
            return  # the run was stopped on purpose: the item did not run
        it = Item(probe=cur.get("probe", "?"), binary="", test=cur.get("test", "?"),
                  family=cur.get("family", "none"),
                  ids=[i for i in cur.get("ids", "").split(",") if i])
        text = "\n".join(lines)
        if status is None:
            out = interpret(text, None)
            if out.verdict == "error" or not any(l for l in lines if "@SP1 end" in l):
                out.verdict = "error"
                out.message = cut
        elif status == TIMEOUT_STATUS:
            out = interpret(text, -signal.SIGKILL, True, item_timeout)
        elif status > 128:
            out = interpret(text, -(status - 128))
        else:
            out = interpret(text, status)
        results.append(result_record(it, out, 0.0, ""))
        last = results[-1]["item"]

    for line in text.splitlines():
        ev = parse_line(line)
        if ev is None:
            if cur is not None:
                lines.append(line)
            continue
        if ev.kind == "guest":
            kernel = ev.fields.get("kernel")
        elif ev.kind == "guest-done":
            done = True
        elif ev.kind == "health" and cur is None:
            health.append({"when": ev.fields.get("when", ""), "taint": ev.fields.get("taint", ""),
                           "after": last, "klog": []})
        elif ev.kind == "klog" and cur is None and health:
            health[-1]["klog"].append(ev.fields.get("line", ""))
        elif ev.kind == "env" and cur is None:
            env[ev.fields.get("key", "")] = ev.fields.get("value", "")
        elif ev.kind == "item":
            if cur is not None:
                close(None)
            cur, lines = ev.fields, []
        elif ev.kind == "exit" and cur is not None:
            try:
                status = int(ev.fields.get("status", ""))
            except ValueError:
                status = None
            close(status)
            cur, lines = None, []
        elif cur is not None:
            lines.append(line[line.find(PREFIX):])
    if cur is not None:
        close(None)
    return {"kernel": kernel, "env": env, "results": results, "done": done, "health": health}
