"""Run one probe test as its own process, isolated and bounded in time.

Each item runs under build/sp-isolate (own user+net+pid+mount namespaces),
in its own process group. On timeout, on Ctrl-C, and after every normal
end, the whole group is killed, so nothing a probe started survives it.
"""
from __future__ import annotations

import os
import shutil
import select
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import arch, protocol
from .proc import kill_group
from .records import Item, result_record  # noqa: F401  (Item: the callers' type)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# How long output may trail the probe's end (its group is dead by then).
PIPE_GRACE_S = 1.0

# The process groups of the items running now (items run from several
# threads at once), so that an interrupted run ends every one of them.
_running: set = set()
_running_lock = threading.Lock()
_stopping = threading.Event()


def stop_all() -> None:
    """Ctrl-C, SIGTERM or -x: start no further item, kill every running
    one's group (its thread then sees the exit and returns at once)."""
    _stopping.set()
    with _running_lock:
        groups = list(_running)
    for pgid in groups:
        kill_group(pgid)


def allow_runs() -> None:
    _stopping.clear()


@dataclass
class Settings:
    isolate: str | None        # path of sp-isolate, None to run bare
    timeout_s: float = 5.0
    preload: str | None = None
    host_only: bool = False    # --host: isolation switched off
    extra_env: dict | None = None
    wrap: list | None = None   # WRAP: the probe runs as `wrap... PROBE ARGS`


def item_timeout(item: Item, settings: Settings) -> float:
    """The item's timeout: the run's, or longer for an item whose Must
    allows a longer wait (`bound` on its --list line) plus a second."""
    return max(settings.timeout_s, item.bound + 1.0 if item.bound else 0.0)


def command(item: Item, settings: Settings) -> list:
    probe = list(settings.wrap or []) + \
        (arch.isolated if settings.isolate and not settings.host_only else arch.emulator)(item.binary) + \
        [item.binary, "--run", item.test, "--family", item.family]
    if not settings.isolate:
        return probe
    wrap = [settings.isolate]
    if settings.host_only:
        wrap.append("--host")
    return wrap + ["--"] + probe


def probe_env(settings: Settings) -> dict:
    """The caller's environment (LD_PRELOAD stacks read their settings from
    it), with the library under test handed to sp-isolate, which applies it
    to the probe alone."""
    env = dict(os.environ)
    if settings.preload:
        env["SOCKPROBE_PRELOAD"] = settings.preload
    else:
        env.pop("SOCKPROBE_PRELOAD", None)
    env.setdefault("SOCKPROBE_FIXTURES", str(FIXTURES))
    if settings.extra_env:
        env.update(settings.extra_env)
    # The probe's own waits end well before the runner's timeout, so a stuck
    # wait is reported by the probe as a failed check, not as a timeout.
    env.setdefault("SOCKPROBE_WAIT_MS", str(max(100, int(settings.timeout_s * 400))))
    return env


def run_item(item: Item, settings: Settings) -> dict:
    """Run one item; return its result record (the report's format)."""
    cmd = command(item, settings)
    if _stopping.is_set():
        return result_record(item, protocol.Outcome(
            verdict="error", message="not run: the run was interrupted"), 0.0, "")
    start = time.monotonic()
    env = probe_env(settings)
    own_dir = own_socket_wrapper_dir(env, settings)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    except OSError as e:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
        return result_record(item, protocol.Outcome(
            verdict="error", message="cannot start %s: %s" % (cmd[0], e.strerror)),
            0.0, "")
    with _running_lock:
        _running.add(proc.pid)
    if _stopping.is_set():
        kill_group(proc.pid)
    try:
        return _finish(item, settings, proc, start)
    finally:
        with _running_lock:
            _running.discard(proc.pid)
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)


def own_socket_wrapper_dir(env: dict, settings: Settings):
    """socket_wrapper's SOCKET_WRAPPER_DIR is its emulated network (one
    Unix socket file per address and port). Each item has a network
    namespace of its own, so it gets a directory of its own under the one
    given: items running in parallel (all pid 2 in their pid namespaces,
    so socket_wrapper picks them the same ports) must not meet in a
    shared one. Returns the directory to remove afterwards, or None."""
    base = env.get("SOCKET_WRAPPER_DIR")
    if not (settings.preload and base and os.path.isdir(base)):
        return None
    d = tempfile.mkdtemp(prefix="item-", dir=base)
    env["SOCKET_WRAPPER_DIR"] = d
    return d


def _finish(item: Item, settings: Settings, proc, start: float) -> dict:
    timed_out = False
    out, err = bytearray(), bytearray()
    readers = [threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True)]
    for t in readers:
        t.start()
    try:
        timed_out = not _wait_exit(proc, item_timeout(item, settings))
    finally:
        # Normal end, timeout or KeyboardInterrupt: the whole group goes,
        # including children that still hold the output pipe open.
        kill_group(proc.pid)
        proc.wait()
    for t in readers:
        t.join(PIPE_GRACE_S)
    escaped = any(t.is_alive() for t in readers)
    duration = time.monotonic() - start
    text = bytes(out).decode("utf-8", "replace")
    outcome = protocol.interpret(text, proc.returncode, timed_out, item_timeout(item, settings))
    if escaped and outcome.verdict == "pass":
        outcome.verdict = "error"
        outcome.message = ("a process the probe started left its process group and "
                           "still holds the output open (run with namespaces to contain it)")
    return result_record(item, outcome, duration, bytes(err).decode("utf-8", "replace"))


def _wait_exit(proc, timeout_s: float) -> bool:
    """Wait for the probe's exit; False on timeout. A pidfd wakes us the
    moment it exits (Popen.wait with a timeout polls, with sleeps of up to
    50 ms, which would dominate a probe's run time)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return bool(ready)
    finally:
        os.close(fd)


def _drain(pipe, buf: bytearray) -> None:
    for chunk in iter(lambda: pipe.read1(65536), b""):
        buf.extend(chunk)
