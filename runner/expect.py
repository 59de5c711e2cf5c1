"""Known deviations as data: expectations/<target>.tsv.

Each line: `item-or-ID <TAB> expected verdict <TAB> reason <TAB> link`
(`#` starts a comment line). The key is an item (`tcp/NAME[ipv6]`), a
test (`tcp/NAME`, every family) or a catalogue ID (every item covering
it). The expected verdict is one of fail, error, timeout, broken, skip.

Applied to one result:
- the verdict is the expected one: `xfail` (a known deviation; it does
  not fail the run), with the reason and link kept in `expected`;
- the verdict is `pass`: `xpass` (the deviation is gone; listed as fixed);
- anything else stays as it is (a different failure is still a failure).
The most specific key wins: item, then test, then ID, then a pattern: a
key with `*` is a pattern over items (`*` matches anything, nothing else
is special; `*[ipv6]`: every IPv6 item), for a deviation with one cause across many items (a stack that
refuses ::1); the first matching pattern in file order applies."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import discover, verdicts
from .errors import UsageError

DIR = discover.ROOT / "expectations"
VERDICTS = verdicts.EXPECTABLE


class ExpectError(UsageError):
    pass


@dataclass(frozen=True)
class Expectation:
    key: str
    verdict: str
    reason: str
    link: str
    where: str  # file:line, for messages


def resolve(name_or_path: str) -> Path:
    """EXPECT=socket_wrapper names expectations/socket_wrapper.tsv; a path
    names a file."""
    p = Path(name_or_path)
    if p.suffix == ".tsv" or "/" in name_or_path:
        if not p.is_file():
            raise ExpectError("expectation file %s does not exist" % name_or_path)
        return p
    p = DIR / (name_or_path + ".tsv")
    if not p.is_file():
        known = sorted(f.stem for f in DIR.glob("*.tsv"))
        raise ExpectError("no expectations for '%s' (known: %s; or give a .tsv path)"
                          % (name_or_path, ", ".join(known) or "none"))
    return p


def load(path: Path) -> dict:
    """{key: Expectation}; one clear error for a malformed line."""
    out = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split("\t")
        where = "%s:%d" % (path, n)
        if len(cols) < 3 or not cols[0].strip() or not cols[2].strip():
            raise ExpectError("%s: want 'item-or-ID<TAB>verdict<TAB>reason[<TAB>link]'" % where)
        key, verdict = cols[0].strip(), cols[1].strip()
        if verdict not in VERDICTS:
            raise ExpectError("%s: expected verdict must be one of %s (got '%s')"
                              % (where, ", ".join(VERDICTS), verdict))
        if key in out:
            raise ExpectError("%s: '%s' is listed twice (also %s)" % (where, key, out[key].where))
        out[key] = Expectation(key, verdict, cols[2].strip(),
                               cols[3].strip() if len(cols) > 3 else "", where)
    return out


def match(rec: dict, table: dict):
    """The expectation that applies to a result, most specific first."""
    for key in [rec.get("item"), rec.get("test")] + list(rec.get("ids", [])):
        if key and key in table:
            return table[key]
    item = rec.get("item") or rec.get("test") or ""
    for key, e in table.items():
        if "*" in key and re.fullmatch(".*".join(map(re.escape, key.split("*"))), item):
            return e
    return None


def apply(rec: dict, table: dict) -> dict:
    """Rewrite one result's verdict by the table (see the module doc)."""
    e = match(rec, table)
    if e is None:
        return rec
    if rec["verdict"] == e.verdict:
        rec["expected"] = {"verdict": e.verdict, "reason": e.reason, "link": e.link}
        rec["verdict"] = "xfail"
        rec["message"] = "known deviation: %s%s" % (e.reason, " (was: %s)" % rec["message"]
                                                      if rec.get("message") else "")
    elif rec["verdict"] == "pass":
        rec["expected"] = {"verdict": e.verdict, "reason": e.reason, "link": e.link}
        rec["verdict"] = "xpass"
        rec["message"] = "expected %s (%s) but it passes now: fixed?" % (e.verdict, e.reason)
    return rec


def unused(table: dict, results: list) -> list:
    """Keys that matched no result of the run (stale lines)."""
    hit = {e.key for r in results for e in [match(r, table)] if e}
    return sorted(k for k in table if k not in hit)
