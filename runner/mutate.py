"""`make mutate`: the mutation campaign, or how much the suite detects.

Every fault of build/libspfault.so (the FAULT(...) rows of faults/*.c, read
through runner/faults.py) models a real deviation. The campaign runs the
whole suite, every item, once with the library loaded and no fault (which
must change nothing) and once under each non-equivalent fault, in
parallel over the cores, with SOCKPROBE_WAIT_MS lowered so that waits a
fault makes run out end quickly. A fault is caught when every catalogue ID
it names fails (a verdict other than pass or skip) in every family that ID
runs for; otherwise it ESCAPED. Equivalent faults (FAULT_EQUIVALENT) are
listed with their reason and not run.

The result: a table on the terminal (fault, what it models, the items that
failed, caught or ESCAPED), the score (caught / non-equivalent), and
reports/mutate-<timestamp>/mutate.md and mutate.json. Exit 1 if any fault
escaped or the suite does not pass without a fault.

tests/test_faults.py (part of `make test`) uses the same judge() and
run_items() on the items each fault names.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import datetime as _dt
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import discover, execute, faults, report, verdicts

SCHEMA = "sockprobe-mutate/1"
# The bound of every probe wait under a fault (the suite's own default is
# 2000 ms); a conformant item never runs a wait out, so this only shortens
# the waits a fault makes fail. The run without a fault keeps the default,
# so that a slow machine cannot make it fail.
WAIT_MS = 500
NO_FAULT_WAIT_MS = 2000
TIMEOUT_S = 4.0
NOT_FAILING = verdicts.NOT_FAILING


def fault_settings(fault: str | None, *, build: Path = discover.BUILD,
                   library: Path = faults.LIBRARY, wait_ms: int = WAIT_MS,
                   timeout_s: float = TIMEOUT_S) -> execute.Settings:
    """How an item runs under one fault (None: the library, no fault)."""
    # SOCKPROBE_FAULT is always set: one in the caller's environment must
    # not leak into the run without a fault.
    env = {"SOCKPROBE_WAIT_MS": str(wait_ms if fault else NO_FAULT_WAIT_MS),
           "SOCKPROBE_FAULT": fault or ""}
    return execute.Settings(isolate=str(build / "sp-isolate"), timeout_s=timeout_s,
                            preload=str(library), extra_env=env)


def run_items(items: list, settings: execute.Settings, workers: int | None = None) -> list:
    """Run items with one set of settings, in parallel; results in order."""
    with cf.ThreadPoolExecutor(workers or default_workers()) as ex:
        return list(ex.map(lambda i: execute.run_item(i, settings), items))


def default_workers() -> int:
    """Three items per core: under a fault most items spend their time in
    a wait the fault makes run out, not on the CPU."""
    return 3 * (os.cpu_count() or 1)


def _own(i: str, fam: str, only) -> bool:
    """Is ID i in family fam one the fault breaks? (only: {ID: families}
    for the IDs it names as "ID[family]")."""
    return not only or i not in only or fam in only[i]


def judge(ids, results: list, only: dict | None = None) -> dict:
    """{ID: families where it did not fail} for the IDs a fault names; an
    ID no item covers maps to [] ("not run"). Empty dict: caught. An ID
    in `only` is judged in those families alone."""
    ids = set(ids)
    failing = collections.defaultdict(set)   # id -> families with a failing item
    families = collections.defaultdict(set)  # id -> families run
    for r in results:
        for i in set(r["ids"]) & ids:
            fam = r["family"] or "none"
            if not _own(i, fam, only):
                continue
            families[i].add(fam)
            if r["verdict"] not in NOT_FAILING:
                failing[i].add(fam)
    return {i: sorted(families[i] - failing[i]) for i in sorted(ids)
            if families[i] - failing[i] or not families[i]}


def unshowable(ids, fault_results: list, clean_results: list) -> dict:
    """{ID: skip message} for the IDs (among those a fault did not make
    fail) for which this system cannot show the fault: in a family where
    no item of the ID failed under the fault, one of its items skips even
    without the fault (no /proc of the item's own in a container, no IPv6),
    and that item may be the one the deviation is about. Such an ID is
    left out of the judgement and said so, never counted as detected."""
    out = {}
    for i in sorted(set(ids)):
        failed = {r["family"] for r in fault_results
                  if i in r["ids"] and r["verdict"] not in NOT_FAILING}
        skipped = [r for r in clean_results if i in r["ids"] and r["verdict"] == "skip"
                   and r["family"] not in failed]
        if skipped:
            out[i] = skipped[0]["message"]
    return out


# Verdicts outside a fault's IDs: counted as collateral, or only shown.
COLLATERAL = ("fail",)
SHOWN_OUTSIDE = ("broken", "timeout", "error")


def collateral(ids, results: list, only: dict | None = None) -> tuple:
    """(counted, shown) for one fault: the items none of whose IDs the
    fault names (in the item's family, for an ID in `only`) that failed
    under it (counted), and those that were broken, timed out or erred
    (shown, not counted); each {item, ids, verdict, message}, in item
    order."""
    ids = set(ids)
    counted, shown = [], []
    for r in sorted(results, key=lambda r: r["item"]):
        if any(_own(i, r.get("family") or "none", only) for i in ids & set(r["ids"])):
            continue
        row = {"item": r["item"], "ids": list(r["ids"]), "verdict": r["verdict"],
               "message": r["message"]}
        if r["verdict"] in COLLATERAL:
            counted.append(row)
        elif r["verdict"] in SHOWN_OUTSIDE:
            shown.append(row)
    return counted, shown


def failed_items(results: list) -> list:
    return sorted(r["item"] for r in results if r["verdict"] not in NOT_FAILING)


# ---- the campaign ------------------------------------------------------------


class Progress:
    """One line of progress with an ETA: rewritten in place on a terminal,
    a line every 10% otherwise."""

    def __init__(self, total: int, out=sys.stdout):
        self.total, self.done, self.out = total, 0, out
        self.start = time.monotonic()
        self.tty = out.isatty()
        self.lock = threading.Lock()
        self.next_mark = 0.1

    def step(self, faults_done: int, faults_total: int) -> None:
        with self.lock:
            self.done += 1
            el = time.monotonic() - self.start
            eta = el / self.done * (self.total - self.done)
            line = "mutate: %d/%d runs, %d/%d faults done, %s elapsed, ETA %s" % (
                self.done, self.total, faults_done, faults_total, _mmss(el), _mmss(eta))
            if self.tty:
                self.out.write("\r" + line + " " * 4)
                if self.done == self.total:
                    self.out.write("\n")
            elif self.done >= self.next_mark * self.total or self.done == self.total:
                self.out.write(line + "\n")
                while self.next_mark * self.total <= self.done:
                    self.next_mark += 0.1
            self.out.flush()


def _mmss(s: float) -> str:
    s = int(round(s))
    return "%dm%02ds" % (s // 60, s % 60) if s >= 60 else "%ds" % s


def campaign(table: list, items: list, *, workers: int, build: Path = discover.BUILD,
             library: Path = faults.LIBRARY, wait_ms: int = WAIT_MS,
             timeout_s: float = TIMEOUT_S, out=sys.stdout) -> dict:
    """Run the no-fault pass and every non-equivalent fault over items."""
    live = [f for f in table if not f.equivalent]
    runs = [None] + [f.name for f in live]
    jobs = [(name, it) for name in runs for it in items]
    random.Random(0).shuffle(jobs)  # faulted waits spread out: a steady ETA
    results = collections.defaultdict(list)
    left = collections.Counter(name for name, _ in jobs)
    finished = [0]
    progress = Progress(len(jobs), out)
    settings = {name: fault_settings(name, build=build, library=library, wait_ms=wait_ms,
                                     timeout_s=timeout_s) for name in runs}

    def one(job):
        name, it = job
        return name, execute.run_item(it, settings[name])

    started = time.time()
    ex = cf.ThreadPoolExecutor(workers)
    try:
        for fut in cf.as_completed([ex.submit(one, j) for j in jobs]):
            name, rec = fut.result()
            results[name].append(rec)
            left[name] -= 1
            if left[name] == 0 and name is not None:
                finished[0] += 1
            progress.step(finished[0], len(live))
    except KeyboardInterrupt:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown()
    clean = results[None]
    rows = []
    for f in table:
        if f.equivalent:
            rows.append({"name": f.name, "ids": sorted(f.ids), "models": f.models,
                         "result": "equivalent", "equivalent": f.equivalent,
                         "failed_items": [], "still_passing": {},
                         "collateral": [], "collateral_shown": []})
            continue
        rs = results[f.name]
        missed = judge(f.ids, rs, f.only)
        cannot = unshowable(missed, rs, clean)
        for i in cannot:
            del missed[i]
        result = "ESCAPED" if missed else "unshowable" if cannot.keys() >= f.ids else "caught"
        counted, shown = collateral(f.ids, rs, f.only)
        rows.append({"name": f.name, "ids": f.named, "models": f.models,
                     "result": result, "equivalent": None, "unshowable": cannot,
                     "failed_items": failed_items(rs), "still_passing": missed,
                     "collateral": counted, "collateral_shown": shown})
    caught = sum(r["result"] == "caught" for r in rows)
    return {
        "schema": SCHEMA,
        "started": _iso(started),
        "duration_s": round(time.time() - started, 1),
        "workers": workers,
        "wait_ms": wait_ms,
        "timeout_s": timeout_s,
        "items": len(items),
        "runs": len(jobs),
        "no_fault": {"failed_items": failed_items(clean),
                     "messages": {r["item"]: r["message"] for r in clean
                                  if r["verdict"] not in NOT_FAILING}},
        "score": {"caught": caught, "non_equivalent": len(live),
                  "equivalent": len(table) - len(live),
                  "unshowable": [r["name"] for r in rows if r["result"] == "unshowable"],
                  "escaped": [r["name"] for r in rows if r["result"] == "ESCAPED"],
                  "collateral": sum(len(r["collateral"]) for r in rows),
                  "collateral_faults": [r["name"] for r in rows if r["collateral"]]},
        "faults": rows,
    }


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


# ---- output -----------------------------------------------------------------------


def _short(items: list, n: int = 3) -> str:
    if not items:
        return "none"
    more = " +%d more" % (len(items) - n) if len(items) > n else ""
    return "%d: %s%s" % (len(items), ", ".join(items[:n]), more)


def _missed(still: dict) -> str:
    return "; ".join("%s passes in %s" % (i, ", ".join(f) if f else "no item covers it")
                     for i, f in still.items())


def score_line(doc: dict) -> str:
    s = doc["score"]
    pct = 100.0 * s["caught"] / s["non_equivalent"] if s["non_equivalent"] else 0.0
    line = "score: %d/%d non-equivalent faults caught (%.1f%%), %d equivalent, %d ESCAPED" % (
        s["caught"], s["non_equivalent"], pct, s["equivalent"], len(s["escaped"]))
    line += ": " + ", ".join(s["escaped"]) if s["escaped"] else ""
    if s.get("unshowable"):
        line += "; %d cannot be shown on this system: %s" % (
            len(s["unshowable"]), ", ".join(s["unshowable"]))
    if "collateral" in s:
        line += "; %d collateral failures (items failing outside the fault's IDs, goal 0)" % (
            s["collateral"])
        if s["collateral"]:
            line += " under %d faults" % len(s["collateral_faults"])
    return line


def _outside(row: dict) -> str:
    return "%s %s [%s]: %s" % (row["verdict"], row["item"], ", ".join(row["ids"]),
                               row["message"] or "(no message)")


def render_text(doc: dict) -> str:
    rows = [r for r in doc["faults"] if r["result"] != "equivalent"]
    w = max([len("fault")] + [len(r["name"]) for r in rows])
    out = ["%-*s  %-10s  %s" % (w, "fault", "result", "items that failed")]
    for r in rows:
        out.append("%-*s  %-10s  %s" % (w, r["name"], r["result"], _short(r["failed_items"])))
        out.append("%-*s  models: %s" % (w, "", r["models"]))
        if r["still_passing"]:
            out.append("%-*s  not caught: %s" % (w, "", _missed(r["still_passing"])))
        for i, why in r.get("unshowable", {}).items():
            out.append("%-*s  %s cannot be shown here (skips without the fault too): %s"
                       % (w, "", i, why))
        for c in r.get("collateral", []):
            out.append("%-*s  COLLATERAL %s" % (w, "", _outside(c)))
        for c in r.get("collateral_shown", []):
            out.append("%-*s  outside its IDs (not counted): %s" % (w, "", _outside(c)))
    eq = [r for r in doc["faults"] if r["result"] == "equivalent"]
    if eq:
        out += ["", "equivalent faults (nothing a program can observe changes):"]
        out += ["  %s: %s (models: %s)" % (r["name"], r["equivalent"], r["models"]) for r in eq]
    if doc["no_fault"]["failed_items"]:
        out += ["", "NOT PASSING WITHOUT A FAULT (the library alone must change nothing):"]
        out += ["  %s: %s" % (i, doc["no_fault"]["messages"].get(i, ""))
                for i in doc["no_fault"]["failed_items"]]
    out += ["", score_line(doc),
            "%d items x %d runs (no fault + %d faults) = %d runs on %d workers in %s "
            "(SOCKPROBE_WAIT_MS=%d)" % (doc["items"], doc["runs"] // max(1, doc["items"]),
                                        doc["score"]["non_equivalent"], doc["runs"],
                                        doc["workers"], _mmss(doc["duration_s"]), doc["wait_ms"])]
    return "\n".join(out) + "\n"


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_md(doc: dict) -> str:
    out = ["# sockprobe mutation campaign", "",
           "Started %s; %d items, %d runs on %d workers in %s; SOCKPROBE_WAIT_MS=%d." % (
               doc["started"], doc["items"], doc["runs"], doc["workers"],
               _mmss(doc["duration_s"]), doc["wait_ms"]), "",
           "Kernel %s (%s), %s %s; isolation: %s." % tuple(
               (doc.get("environment") or {}).get(k) or "?" for k in
               ("kernel", "machine", "libc", "libc_version", "isolation")), "",
           "**" + score_line(doc) + "**", "",
           "A fault is caught when every ID it names fails (verdict other than pass or "
           "skip) in every family.", "",
           "| fault | IDs | models | result | items that failed |", "|---|---|---|---|---|"]
    for r in doc["faults"]:
        if r["result"] == "equivalent":
            continue
        res = r["result"] if not r["still_passing"] else "%s (%s)" % (
            r["result"], _missed(r["still_passing"]))
        out.append("| `%s` | %s | %s | %s | %s |" % (
            r["name"], ", ".join(r["ids"]), _md(r["models"]), _md(res),
            "<br>".join("`%s`" % i for i in r["failed_items"]) or "none"))
    outside = [(r, c, counted) for r in doc["faults"]
               for counted, key in ((True, "collateral"), (False, "collateral_shown"))
               for c in r.get(key, [])]
    if outside:
        out += ["", "## Outside the faults' IDs", "",
                "An item that fails under a fault none of whose IDs it covers is a "
                "collateral failure (counted, goal 0): it checks something that is no Must "
                "of its own IDs, or relies on another ID without saying `broken (needs ID)`. "
                "`broken`, `timeout` and `error` outside the IDs are shown, not counted.", "",
                "| fault | item | item's IDs | verdict | counted | message |",
                "|---|---|---|---|---|---|"]
        out += ["| `%s` | `%s` | %s | %s | %s | %s |" % (
            r["name"], c["item"], ", ".join(c["ids"]), c["verdict"],
            "collateral" if counted else "shown", _md(c["message"] or ""))
            for r, c, counted in outside]
    eq = [r for r in doc["faults"] if r["result"] == "equivalent"]
    if eq:
        out += ["", "## Equivalent faults", "", "| fault | IDs | models | why nothing observable changes |",
                "|---|---|---|---|"]
        out += ["| `%s` | %s | %s | %s |" % (r["name"], ", ".join(r["ids"]), _md(r["models"]),
                                           _md(r["equivalent"])) for r in eq]
    if doc["no_fault"]["failed_items"]:
        out += ["", "## Not passing without a fault", ""]
        out += ["- `%s`: %s" % (i, _md(doc["no_fault"]["messages"].get(i, "")))
                for i in doc["no_fault"]["failed_items"]]
    return "\n".join(out) + "\n"


def write(doc: dict, base: Path) -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    d = base / ("mutate-" + stamp)
    n = 1
    while d.exists():
        n += 1
        d = base / ("mutate-%s-%d" % (stamp, n))
    d.mkdir(parents=True)
    (d / "mutate.json").write_text(json.dumps(doc, indent=2) + "\n")
    (d / "mutate.md").write_text(render_md(doc))
    return d


def select(table: list, names: list) -> list:
    """The named faults (all when names is empty); unknown names raise."""
    if not names:
        return table
    known = {f.name: f for f in table}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError("unknown fault(s): %s (the table has %d; see faults/*.c)"
                         % (", ".join(unknown), len(known)))
    return [known[n] for n in names]


class MutateError(report.ReportError):
    """A one-line error (the CLI prints report errors that way)."""


def add_arguments(p) -> None:
    p.add_argument("faults", nargs="*", metavar="FAULT", help="only these faults (default all)")
    p.add_argument("--jobs", "-j", type=int, default=0,
                   help="items run at once (default: three per core)")
    p.add_argument("--wait-ms", type=int, default=WAIT_MS,
                   help="SOCKPROBE_WAIT_MS for every run (default %d)" % WAIT_MS)
    p.add_argument("--timeout", type=float, default=TIMEOUT_S,
                   help="seconds per item (default %g)" % TIMEOUT_S)
    p.add_argument("--reports", default=str(discover.ROOT / "reports"),
                   help="where mutate-<timestamp>/ is written")
    p.add_argument("--probes", default="",
                   help="only the items of these probes (comma-separated), to measure their "
                        "collateral: a fault whose own items are elsewhere then reads as missed")


def cmd(a) -> int:
    """`python -m runner mutate`: run the campaign, print and write it."""
    build = discover.BUILD
    for need in (build / "sp-isolate", faults.LIBRARY):
        if not need.exists():
            raise MutateError("%s is not built: run `make mutate` (it builds first)" % need)
    if a.jobs < 0 or a.wait_ms <= 0 or a.timeout <= 0:
        raise MutateError("--jobs, --wait-ms and --timeout must be positive")
    try:
        table = select(faults.table(), a.faults)
    except ValueError as e:
        raise MutateError(str(e))
    except (OSError, subprocess.CalledProcessError) as e:
        why = (getattr(e, "stderr", "") or str(e)).strip().splitlines()
        raise MutateError("cannot read the fault table of %s: %s (rebuild with `make mutate`)"
                          % (faults.LIBRARY, why[-1] if why else e))
    base = Path(a.reports)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MutateError("cannot create %s: %s (choose another with --reports)"
                          % (base, e.strerror))
    if not os.access(base, os.W_OK | os.X_OK):
        raise MutateError("cannot write to %s (choose another with --reports)" % base)
    items = discover.all_items(build)
    if a.probes:
        wanted = set(a.probes.split(","))
        unknown = wanted - {it.probe for it in items}
        if unknown:
            raise MutateError("no probe %s (the probes are cases/*.c's names)"
                              % ", ".join(sorted(unknown)))
        items = [it for it in items if it.probe in wanted]
    workers = a.jobs or default_workers()
    live = sum(1 for f in table if not f.equivalent)
    print("mutate: %d faults (%d equivalent, not run) x %d items, plus one run without a "
          "fault, on %d workers" % (len(table), len(table) - live, len(items), workers),
          flush=True)
    doc = campaign(table, items, workers=workers, wait_ms=a.wait_ms, timeout_s=a.timeout)
    env = discover.probe_environment(build, str(build / "sp-isolate"))
    doc["environment"] = {k: env.get(k) for k in ("kernel", "machine", "libc", "libc_version",
                                                  "isolation")}
    sys.stdout.write("\n" + render_text(doc))
    d = write(doc, base)
    rel = os.path.relpath(d)
    print("report: %s (mutate.md, mutate.json)" % (d if rel.startswith("..") else rel))
    return 1 if doc["score"]["escaped"] or doc["no_fault"]["failed_items"] else 0
