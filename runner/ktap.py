"""KTAP version 1 for kernel CI: one run's results as results.ktap.

One subtest per catalogue behavior ID, in catalogue order; inside it one
test line per item covering that ID (its family in the name). An item
that covers two IDs appears under both. Skips carry `# SKIP reason`;
timeouts `# TIMEOUT`, crashes `# ERROR`, unmet preconditions `# BROKEN`
(all three are `not ok`); known deviations (expectation files)
`ok ... # XFAIL reason`; failed checks and messages are `# ` diagnostic
lines before the result line. A KTAP parser that does not know nesting
(plain TAP, Perl's prove) still reads the top level: one line per ID."""
from __future__ import annotations

from . import catalogue, verdicts

INDENT = "  "
_DIRECTIVE = verdicts.KTAP_DIRECTIVE


def _clean(text: str) -> str:
    """A description or diagnostic may not hold '#' or a newline."""
    return " ".join(str(text).replace("#", "no.").split())


def _item_line(n: int, r: dict) -> list:
    # The guest kernel warned, oopsed or tainted after this item (guest runs).
    return ["# " + _clean(m) for m in r.get("kernel_health", [])] + _item_lines(n, r)


def _item_lines(n: int, r: dict) -> list:
    name = _clean(r.get("item", r["test"]))
    v = r["verdict"]
    if v == "pass":
        return ["ok %d %s" % (n, name)]
    if v == "skip":
        return ["ok %d %s # SKIP %s" % (n, name, _clean(r.get("message") or "skipped"))]
    if v == "xfail":
        return ["ok %d %s # XFAIL %s" % (n, name, _clean(r["expected"]["reason"]))]
    if v == "xpass":
        return ["# XPASS: listed as %s (%s), passes now" % (
            r["expected"]["verdict"], _clean(r["expected"]["reason"])), "ok %d %s" % (n, name)]
    diag = []
    if r.get("message"):
        diag.append("# " + _clean(r["message"]))
    for f in r.get("failures", []):
        diag.append("# %s: %s: expected %s, observed %s" % tuple(
            _clean(f.get(k, "")) for k in ("at", "expr", "expected", "observed")))
    line = "not ok %d %s" % (n, name)
    if v in _DIRECTIVE:
        line += " # %s" % _DIRECTIVE[v]
        if v == "broken" and r.get("needs"):
            line += " needs %s" % _clean(r["needs"])
    return diag + [line]


def _id_verdict(rs: list) -> str:
    vs = {r["verdict"] for r in rs}
    if vs - {"pass", "skip", "xfail", "xpass"}:
        return "not ok"
    return "skip" if vs == {"skip"} else "ok"


def render(report: dict) -> str:
    """The whole KTAP document for a report.json document."""
    by_id = {}
    for r in report["results"]:
        for i in r.get("ids", []):
            by_id.setdefault(i, []).append(r)
    order = [i for i in catalogue.load() if i in by_id]
    order += sorted(i for i in by_id if i not in order)
    env = report.get("environment", {})
    out = ["KTAP version 1",
           "# sockprobe: kernel %s, %s %s, isolation %s" % (
               _clean(env.get("kernel", "?")), _clean(env.get("libc", "?")),
               _clean(env.get("libc_version", "")), _clean(env.get("isolation", "?")))]
    if report.get("partial"):
        out.append("# PARTIAL run: not every item ran")
    # A guest kernel that warned, oopsed or tainted fails the run: one more
    # top-level test says so (only then), for CI that reads KTAP alone.
    health = (env.get("kernel_health") or {}).get("problems", [])
    out.append("1..%d" % (len(order) + (1 if health else 0)))
    for n, id_ in enumerate(order, 1):
        rs = by_id[id_]
        out += [INDENT + "KTAP version 1", INDENT + "# Subtest: " + id_,
                INDENT + "1..%d" % len(rs)]
        for m, r in enumerate(rs, 1):
            out += [INDENT + l for l in _item_line(m, r)]
        v = _id_verdict(rs)
        if v == "skip":
            reasons = sorted({_clean(r.get("message") or "skipped") for r in rs})
            out.append("ok %d %s # SKIP %s" % (n, id_, "; ".join(reasons)))
        else:
            out.append("%s %d %s" % (v, n, id_))
    if health:
        out += ["# " + _clean(pr["message"]) for pr in health]
        out.append("not ok %d guest-kernel-health" % (len(order) + 1))
    return "\n".join(out) + "\n"
