"""Process control: bounded runs of whole process groups and sessions, and
signals held while clean-up runs.

Every way of running uses these: one probe item (runner/execute.py), a VM
or a launcher such as ssh (runner/targets/stream.py and the targets), the
kernel matrix's child runs (runner/matrix.py). A process started here
runs in a session or group of its own, and on every way out (normal end,
bound, Ctrl-C, SIGTERM) the whole of it is killed before control returns.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

try:
    import ctypes
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no libc to ask
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def die_with_runner():
    """In a child, before exec: SIGKILL when the runner dies, so a runner
    killed outright (SIGKILL, OOM) still takes its VM along."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@contextlib.contextmanager
def hold_signals():
    """Ctrl-C or SIGTERM arriving while a VM is being ended or a report is
    being written is noted (the list yielded), not raised: a second
    Ctrl-C must not cut the clean-up short."""
    got = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def kill_group(pgid: int) -> None:
    """SIGKILL a process group; nothing if it is gone already."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def session_members(sid: int) -> list:
    """Pids of live processes in session sid (a VM and everything it
    started: UML runs the guest's processes as host processes)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            st = (d / "stat").read_text()
            rest = st[st.rindex(")") + 2:].split()
        except (OSError, ValueError):
            continue
        if rest[0] != "Z" and int(rest[3]) == sid:
            found.append(int(d.name))
    return found


def end_session(p: subprocess.Popen, bound_s: float = 10.0) -> None:
    """SIGKILL a child's whole session and wait (bounded) until none of it
    is left: the runner returns only when the VM is gone."""
    end = time.monotonic() + bound_s
    while True:
        kill_group(p.pid)
        for pid in session_members(p.pid):  # in case one left the group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p.returncode is None:
            p.wait()
        if not session_members(p.pid) or time.monotonic() > end:
            return
        time.sleep(0.02)  # the kernel reaping what was killed


def size(path) -> int:
    """A file's size; 0 when it is not there (yet)."""
    try:
        return os.stat(path).st_size
    except (OSError, TypeError):
        return 0


def tail(path: Path, n: int) -> bytes:
    """The last n bytes of a file (b"" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, size(path) - n))
            return f.read()
    except OSError:
        return b""


def run_bounded(cmd, console: Path, bound_s: float, env=None, cwd=None, *,
                guest_console: Path | None = None, stream: Path | None = None,
                boot_bound_s: float | None = None, on_stream=None, pass_fds=()) -> str:
    """Run a VM (or any launcher) in a session of its own; its stdout and
    stderr go to console. End it on exit ("exited"), on a kernel panic seen
    on console or guest_console ("panicked"), when neither guest_console
    nor stream shows a byte within boot_bound_s ("silent"), or when bound_s
    expires ("hung"). on_stream(bytes) is given the stream as it grows (b""
    on rounds where it did not).
    Ctrl-C or SIGTERM (KeyboardInterrupt) end it at once too: on every way
    out its whole session is killed before this returns or raises."""
    with open(console, "wb") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env, cwd=cwd, pass_fds=pass_fds,
                             preexec_fn=die_with_runner)
    start = time.monotonic()
    how, offset = "exited", 0
    panic_in = [console] + ([guest_console] if guest_console else [])
    try:
        while True:
            ended = p.poll() is not None
            if on_stream is not None:  # called on every round: progress ticks on it
                data = b""
                if stream is not None and size(stream) > offset:
                    with open(stream, "rb") as f:
                        f.seek(offset)
                        data = f.read()
                    offset += len(data)
                on_stream(data)
            if ended:
                break
            now = time.monotonic() - start
            if now > bound_s:
                how = "hung"
                break
            if boot_bound_s is not None and now > boot_bound_s and \
                    not size(stream) and not size(guest_console):
                how = "silent"
                break
            if any(b"Kernel panic" in tail(f, 65536) for f in panic_in):
                how = "panicked"
                break
            time.sleep(0.2)  # the host watching a VM, not a probe waiting
    finally:
        with hold_signals():
            end_session(p)  # UML leaves helpers: take the whole session
    if how == "exited" and any(b"Kernel panic" in tail(f, 262144) for f in panic_in):
        how = "panicked"  # UML aborts at once after panicking
    return how
