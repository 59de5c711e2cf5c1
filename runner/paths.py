"""The entry points each catalogue ID went through in a run.

Every probe lists, on its "@SP1 paths" line, the reads, writes and wait
calls its item made through the fixture's dispatchers (sp_io_recv,
sp_io_send, sp_wait_on: the .read/.write/.call/.wait axes, and the loops
over every call). This module turns a report into one table: per
catalogue ID, the calls its items went through on that system. Calls a
case makes by name (a plain read() written in the body) are not listed:
the table shows the paths a behavior is checked through beyond those.

`python -m runner paths [REPORT]` prints it (markdown); docs/entry-points.md
is this table for a run on this machine's kernel.
"""
from __future__ import annotations

from . import catalogue, report

# The calls beyond read/recv/recvfrom/recvmsg/readv and their write twins,
# and beyond poll (the default wait).
CLASSIC = {"read", "recv", "recvfrom", "recvmsg", "readv",
           "write", "send", "sendto", "sendmsg", "writev", "poll",
           "shutdown", "close", "accept4", "connect", "bind"}
SIDES = (("in", "reads"), ("out", "writes"), ("wait", "waits"), ("conn", "connection calls"))


def per_id(doc: dict) -> dict:
    """{ID: {"in": set, "out": set, "wait": set, "items": n}} over the
    report's items (every verdict: an unavailable path is left out by the
    probe itself)."""
    out = {}
    for r in doc.get("results", []):
        for i in r.get("ids", []):
            row = out.setdefault(i, {"in": set(), "out": set(), "wait": set(), "conn": set(),
                                     "items": 0})
            row["items"] += 1
            for side, _ in SIDES:
                row[side].update(r.get("paths", {}).get(side, []))
    return out


def _cell(calls: set) -> str:
    if not calls:
        return ""
    order = sorted(calls, key=lambda c: (c not in CLASSIC, c))
    return ", ".join(c if c in CLASSIC else "**%s**" % c for c in order)


def render_md(doc: dict) -> str:
    rows = per_id(doc)
    env = doc.get("environment", {})
    names = catalogue.load()
    lines = ["# Entry points per catalogue ID",
             "",
             "The calls each ID's items went through on kernel %s (%s), run of %s: "
             "reads, writes, wait calls and connection calls (shutdown, close, accept, "
             "connect, bind) made through the fixture's dispatchers "
             "(the items' .read/.write/.call/.wait parameters and their loops over every "
             "call). Entry points beyond the classic calls (read/recv/recvfrom/recvmsg/readv, "
             "their write twins, poll, the plain connection calls) are in bold. An ID whose cells are empty makes its calls "
             "by name in the case. Made by `python -m runner paths`."
             % (env.get("kernel", "?"), env.get("machine", "?"), doc.get("started", "?")),
             "",
             "| ID | items | reads | writes | waits | connection calls |",
             "|---|---|---|---|---|---|"]
    through = 0
    for i in names:
        if i not in rows:
            continue
        r = rows[i]
        if any(c not in CLASSIC for side, _ in SIDES for c in r[side]):
            through += 1
        lines.append("| %s | %d | %s |" % (i, r["items"], " | ".join(
            _cell(r[side]) for side, _ in SIDES)))
    lines += ["", "%d of %d IDs in the run go through at least one entry point beyond the "
              "classic calls." % (through, len([i for i in names if i in rows])), ""]
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("report", nargs="?", default=str(catalogue.ROOT / "reports" / "latest"),
                   help="report.json or a run directory (default: the latest run)")


def cmd(a) -> int:
    print(render_md(report.load(a.report)), end="")
    return 0
