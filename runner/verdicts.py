"""The verdicts, listed once; every module imports them from here.

A probe ends an item with one of PROBE; the runner adds error (no verdict:
a crash, a garbled stream) and timeout; an expectation file turns a known
deviation into xfail and a listed deviation that passes now into xpass
(runner/expect.py)."""
from __future__ import annotations

# What a probe's `end` line may say.
PROBE = ("pass", "fail", "skip", "broken")
# Every verdict a result record can carry, in the order reports count them.
ALL = ("pass", "fail", "error", "timeout", "broken", "skip", "xfail", "xpass")
# "A Must was not shown to hold": any of these makes a run exit 1.
# broken: the test could not create its situation (LTP's TBROK).
BAD = ("fail", "error", "timeout", "broken")
# What an expectation line may expect.
EXPECTABLE = ("fail", "error", "timeout", "broken", "skip")
# Not a failure of the item's behavior (the mutation campaign's judge).
NOT_FAILING = ("pass", "skip")
# How bad, for the worst-of cells of comparisons and matrices.
RANK = {"pass": 0, "xpass": 0, "skip": 1, "broken": 2, "fail": 2, "xfail": 2, "error": 3,
        "timeout": 3}
# KTAP directives of the not-ok verdicts other than fail.
KTAP_DIRECTIVE = {"timeout": "TIMEOUT", "error": "ERROR", "broken": "BROKEN"}


def shown(rec: dict, upper: bool = False) -> str:
    """A record's verdict as people read it: `broken (needs ID)` when the
    item depends on another ID's behavior that deviates (upper: BROKEN)."""
    v = rec["verdict"].upper() if upper else rec["verdict"]
    if rec["verdict"] == "broken" and rec.get("needs"):
        return "%s (needs %s)" % (v, rec["needs"])
    return v


def worst(verdicts) -> str:
    """The worst of some verdicts ("-" for none). On a tie of rank, fail
    wins over broken: a failure shows the behavior deviates, broken (could
    not be set up) shows nothing either way."""
    return max(verdicts, key=lambda v: (RANK.get(v.split(" ")[0], 9), v == "fail")) \
        if verdicts else "-"
