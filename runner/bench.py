"""`make bench`: how fast the suite is (a benchmark, never a test).

Measures, several runs each, median and spread:
  - the whole `make check` (already built), end to end;
  - the runner's overhead per item: an item run by the runner (namespaces,
    timeout, parsing) against the same probe test run bare;
  - REPEAT=N scaling (cost must grow linearly with N);
  - `make check KERNEL=uml`, boot included, where UML is installed;
  - `make check-kernels` (host, UML, QEMU 6.1 and 6.12 side by side), once,
    where QEMU and UML are installed and both Debian kernels are cached.
Names the slowest ten items, and writes bench.json and bench.md into a
reports/bench-*/ directory.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import discover, execute, kernels, report

TARGETS = {"make_check_s": 3.0, "overhead_ms_per_item": 10.0, "uml_s": 15.0,
           "check_kernels_s": 25.0}


def _timed(cmd, **kw) -> tuple:
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return time.perf_counter() - start, r


def spread(xs: list) -> dict:
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4),
            "max": round(max(xs), 4), "runs": len(xs)}


def bench(runs: int, out: Path, with_uml: bool = True, log=print,
          with_kernels: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="sockprobe-bench-") as tmp:
        return _bench(runs, out, with_uml, log, Path(tmp), with_kernels)


def kernels_ready() -> str | None:
    """Why the kernel matrix cannot be timed here (None: it can). Never
    fetches: a benchmark must not time a download."""
    import shutil
    if not kernels.UML.exists() or not shutil.which("qemu-system-x86_64"):
        return "user-mode-linux or qemu-system-x86 is missing"
    if not (discover.BUILD / "static" / "sp-isolate").exists():
        return "the static probes are missing"
    for series in kernels.DEBIAN_META:
        if not list(kernels.CACHE.glob("linux-image-%s.*/boot/vmlinuz-*" % series)):
            return "Debian's %s kernel is not cached (run make check-kernels once)" % series
    return None


def _cpu_idle_share(window_s: float = 0.5) -> float:
    """The share of CPU time this machine spent idle over window_s."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)   # idle + iowait, all
    i0, t0 = sample()
    time.sleep(window_s)  # a measuring window, not a wait for an event
    i1, t1 = sample()
    return (i1 - i0) / max(1, t1 - t0)


def settle(log, bound_s: float = 30.0, idle: float = 0.9) -> None:
    """Before a timed guest step: let the work the previous steps left to
    the kernel (network namespaces are torn down by kernel threads after
    the items end) finish first, so that each step is measured on an idle
    machine. Bounded: past bound_s the step runs anyway, and says so."""
    end = time.monotonic() + bound_s
    while time.monotonic() < end:
        if _cpu_idle_share() >= idle:
            return
    log("(the machine did not settle to %d%% idle within %g s: the next figure is pessimistic)"
        % (idle * 100, bound_s))


def _bench(runs: int, out: Path, with_uml: bool, log, tmp: Path,
           with_kernels: bool = True) -> dict:
    root = discover.ROOT
    res = {"runs": runs, "targets": TARGETS}

    # 1. make check end to end.
    walls, last = [], None
    for _ in range(runs):
        t, r = _timed(["make", "-s", "check", "REPORT_DIR=%s" % tmp], cwd=root)
        if r.returncode != 0:
            raise RuntimeError("make check failed during the benchmark:\n" + r.stdout[-2000:])
        walls.append(t)
    res["make_check_s"] = spread(walls)
    log("make check (built), %d runs: median %.2f s (min %.2f, max %.2f); target <= %.0f s"
        % (runs, statistics.median(walls), min(walls), max(walls), TARGETS["make_check_s"]))
    last = report.load(tmp / "latest")

    # 2. Runner overhead per item: runner-run item vs bare probe run.
    items = discover.all_items()
    s = execute.Settings(isolate=str(discover.BUILD / "sp-isolate"))
    bare, runner = [], []
    for it in items:
        b, rr = [], []
        for _ in range(runs):
            t, _ = _timed([it.binary, "--run", it.test, "--family", it.family])
            b.append(t)
            start = time.perf_counter()
            execute.run_item(it, s)
            rr.append(time.perf_counter() - start)
        bare.append(statistics.median(b))
        runner.append(statistics.median(rr))
    per_item = [(r - b) * 1000 for r, b in zip(runner, bare)]
    whole = (statistics.median(walls) - sum(bare)) / len(items) * 1000
    res["overhead_ms_per_item"] = {"median": round(statistics.median(per_item), 2),
                                   "min": round(min(per_item), 2), "max": round(max(per_item), 2),
                                   "items": len(items)}
    res["whole_run_overhead_ms_per_item"] = round(whole, 2)
    log("runner overhead per item (namespaces, timeout, parsing) vs bare probe: median %.1f ms "
        "(min %.1f, max %.1f) over %d items; target <= %.0f ms"
        % (statistics.median(per_item), min(per_item), max(per_item), len(items),
           TARGETS["overhead_ms_per_item"]))
    log("whole make check beyond the bare probe time, per item (pytest, python start-up, "
        "environment probe): %.1f ms" % whole)

    # 3. REPEAT scaling.
    scale = {}
    for n in (2, 4):
        t, r = _timed([sys.executable, "-m", "runner", "check", "-q", "-n", "2", "--repeat", str(n),
                       "--reports", str(tmp)], cwd=root)
        scale[n] = round(t, 3)
    res["repeat_s"] = scale
    log("REPEAT=2: %.2f s, REPEAT=4: %.2f s (ratio %.2f; linear would be 2.0 minus fixed start-up)"
        % (scale[2], scale[4], scale[4] / scale[2]))

    # 4. UML, boot included.
    if with_uml and kernels.UML.exists() and (discover.BUILD / "static" / "sp-isolate").exists():
        u = []
        for _ in range(max(1, min(runs, 3))):
            settle(log)
            t, r = _timed([sys.executable, "-m", "runner", "check", "--kernel", "uml",
                           "--reports", str(tmp)], cwd=root)
            u.append(t)
        res["uml_s"] = spread(u)
        log("make check KERNEL=uml, boot included, %d runs: median %.1f s (min %.1f, max %.1f); "
            "target <= %.0f s" % (len(u), statistics.median(u), min(u), max(u), TARGETS["uml_s"]))
    else:
        res["uml_s"] = None
        log("KERNEL=uml: not measured (user-mode-linux or the static probes are missing)")

    # 4b. The kernel matrix, once (it is long); its runs go side by side.
    why = "not asked for" if not with_kernels else kernels_ready()
    if why is None:
        settle(log)
        t, r = _timed([sys.executable, "-m", "runner", "kernels", "--reports", str(tmp)], cwd=root)
        steps = {m.group(1): float(m.group(2)) for m in re.finditer(
            r"^\[\d+/\d+\] (.+?): done in ([\d.]+)s", r.stdout + r.stderr, re.M)}
        res["check_kernels_s"] = {"wall": round(t, 2), "steps": steps, "exit": r.returncode}
        log("make check-kernels (host, UML, QEMU 6.1, QEMU 6.12 side by side): %.1f s "
            "(steps: %s); target <= %.0f s" % (t, ", ".join("%s %.1f s" % kv for kv in steps.items()),
                                              TARGETS["check_kernels_s"]))
    else:
        res["check_kernels_s"] = None
        log("make check-kernels: not measured (%s)" % why)

    # 5. The slowest items of the last make check.
    slow = sorted(last["results"], key=lambda r: -r["duration_s"])[:10]
    res["slowest"] = [{"item": r["item"], "duration_s": r["duration_s"]} for r in slow]
    log("slowest ten items:")
    for r in slow:
        log("  %6.1f ms  %s" % (r["duration_s"] * 1000, r["item"]))

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    d = out / ("bench-" + stamp)
    d.mkdir(parents=True, exist_ok=True)
    res["environment"] = last["environment"]
    (d / "bench.json").write_text(json.dumps(res, indent=2) + "\n")
    md = ["# sockprobe benchmark", "", "| figure | median | min | max | target |", "|---|---|---|---|---|"]
    md.append("| make check (s) | %(median)s | %(min)s | %(max)s | <= 3 |" % res["make_check_s"])
    md.append("| runner overhead per item (ms) | %(median)s | %(min)s | %(max)s | <= 10 |"
              % res["overhead_ms_per_item"])
    if res["uml_s"]:
        md.append("| make check KERNEL=uml (s) | %(median)s | %(min)s | %(max)s | <= 15 |" % res["uml_s"])
    if res["check_kernels_s"]:
        md.append("| make check-kernels (s), 1 run | %(wall)s | | | <= 25 |" % res["check_kernels_s"])
    md += ["", "REPEAT=2: %s s, REPEAT=4: %s s" % (scale[2], scale[4]), "", "Slowest items:", ""]
    md += ["- %s: %.1f ms" % (r["item"], r["duration_s"] * 1000) for r in slow]
    (d / "bench.md").write_text("\n".join(md) + "\n")
    log("written: %s/bench.json, %s/bench.md" % (d, d))
    return res
