"""The common run of every guest target: count the selection, boot with
progress, bound the whole run, stop at once on Ctrl-C or SIGTERM, read the
stream, write the (possibly partial) report."""
from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

from .. import discover, expect, guest, report
from ..progress import Progress


def count_items(static: Path, tests: list) -> int:
    """How many items the guest will run: each selected probe's --list,
    read on the host (the static probes run here too)."""
    n = 0
    for p in sorted((static / "probes").iterdir()):
        if not tests or p.name in tests:
            n += len(discover.items_of(p))
        elif any(t.startswith(p.name + "/") for t in tests):  # probe/test (ssh)
            n += sum(1 for i in discover.items_of(p) if "%s/%s" % (p.name, i.test) in tests)
    return n


def default_bound(target, items: int, item_timeout: float) -> float:
    """The guest timeout when none is given: the boot bound plus every item
    running out its own timeout."""
    return target.boot_bound_s + items * item_timeout


def run(target, a, static: Path, tests: list, work: Path | None = None) -> int:
    """Run the selection under target and write the report; the exit code."""
    say = _say
    target.prepare(say)
    items = count_items(static, tests)
    bound = a.guest_timeout or default_bound(target, items, a.timeout)
    # One directory per target ("qemu-6.1", "qemu-6.12"): the kernel matrix
    # runs guests side by side.
    work = work or discover.BUILD / "guest" / target.label().replace(" ", "-").replace("/", "_")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.time()
    say("sockprobe: %s..." % target.describe())
    prog = Progress(target.label(), items)
    seen = {"n": 0, "tail": b""}

    def on_stream(data: bytes) -> None:
        pat = b"@SP1 item "
        text = seen["tail"] + data  # an item line may be split across reads
        seen["n"] += text.count(pat) - seen["tail"].count(pat)
        seen["tail"] = text[-len(pat):]
        if seen["n"]:
            prog.update(seen["n"] - 1, "running items")
        else:
            prog.update(0, "booting")

    stopped = None
    try:
        prog.update(0, "booting")
        how = target.boot(static, work, tests, a.timeout, bound, on_stream, say)
    except KeyboardInterrupt as e:
        stopped = getattr(e, "signum", signal.SIGINT)
        how = "interrupted"
    finally:
        prog.close()
    with guest.hold_signals() as late:
        rc = _finish(target, a, work, started, bound, how, stopped)
    if late and not stopped:
        print("sockprobe: interrupted by %s while writing the report" % signal.Signals(late[0]).name)
        return 128 + late[0]
    return rc


def _finish(target, a, work, started, bound, how, stopped) -> int:
    """The stream so far -> the report; the exit code."""
    say = _say
    text = ""
    if target.stream_path is not None and target.stream_path.exists():
        text = target.stream_path.read_text(errors="replace")
    parsed = guest.parse_stream(text, a.timeout, None if stopped else
                                getattr(target, "cut_short", guest.CUT_SHORT))
    failure = None if stopped else getattr(target, "describe_failure", guest.describe_failure)(
        how, target.console or work / "console.log",
        target.boot_bound_s if how == "silent" else None)
    if not parsed["results"]:
        if stopped:
            say("sockprobe: interrupted by %s before the guest ran an item; no report"
                % signal.Signals(stopped).name)
            return 128 + stopped
        raise guest.GuestError(failure)
    env = dict(parsed["env"])
    env.update(report.runner_environment())
    env["kernel"] = parsed["kernel"] or env.get("kernel")
    env.update(target.environment())
    env["preload"] = None
    modes = sorted({r.get("isolation", "none") for r in parsed["results"]})
    env["isolation"] = "guest (%s)" % ",".join(modes)
    env["item_isolation"] = modes
    env["timeout_s"] = a.timeout
    env["guest_timeout_s"] = bound
    health = guest.kernel_health(parsed.get("health", []))
    env["kernel_health"] = health
    by_item = {}
    for pr in health["problems"]:
        by_item.setdefault(pr["item"], []).append(pr["message"])
    for r in parsed["results"]:
        if r["item"] in by_item:
            r["kernel_health"] = by_item[r["item"]]
    if getattr(a, "expect", None):
        table = expect.load(Path(a.expect))
        for r in parsed["results"]:
            expect.apply(r, table)
        env["expectations"] = a.expect
    doc, d = report.publish(parsed["results"], env, Path(a.reports), partial=not parsed["done"],
                            started=started, finished=time.time())
    if stopped:
        print("sockprobe: interrupted by %s: the guest was stopped; partial report written"
              % signal.Signals(stopped).name)
    elif not parsed["done"]:
        print("%s: %s" % (getattr(target, "prefix", "guest"), failure))
    bad = [r for r in doc["results"] if r["verdict"] in report.BAD]
    for r in bad:
        print("  %s %s: %s" % (r["verdict"].upper(), r["item"], r["message"]))
    for pr in health["problems"]:  # next to the item that was running
        print(pr["message"])
    print("\n".join(report.terminal_summary(doc, d)))
    print("wall time: %.1fs" % (time.time() - started))
    if stopped:
        return 128 + stopped
    return 0 if parsed["done"] and not bad and not health["problems"] else 1


def _say(line: str) -> None:
    print(line, flush=True)
    sys.stdout.flush()
