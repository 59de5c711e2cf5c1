"""Kernel health of a guest run: the taint flags and kernel log lines the
sh runner's -k mode reports around every item (`@SP1 health`, `@SP1 klog`,
read by protocol.parse_framed) -> the problems a run reports beside the
item that had just run. A guest kernel that warned, oopsed or tainted
fails the run (runner/finish.py)."""
from __future__ import annotations

import re

# /proc/sys/kernel/tainted, bit by bit (Documentation/admin-guide/tainted-kernels.rst).
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTNJ"
# Kernel log lines that say the kernel went wrong, whatever the taint says.
BAD_KLOG = re.compile(r"WARNING:|\bBUG:|kernel BUG at|Oops|general protection fault|"
                      r"Call Trace:|UBSAN:|KASAN:|KFENCE:|refcount_t:|list_(add|del) corruption|"
                      r"soft lockup|hard LOCKUP|rcu_\w+ detected stall|blocked for more than|"
                      r"Kernel panic|RIP:")


def taint_flags(mask: int) -> str:
    return "".join(TAINT_LETTERS[b] if b < len(TAINT_LETTERS) else "?%d" % b
                   for b in range(mask.bit_length()) if mask >> b & 1)


def _int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def kernel_health(health: list) -> dict:
    """The `health` records of a stream -> {taint_before, taint_after,
    problems: [{item, new_taint, lines, message}]}: a new taint flag or a
    WARNING/oops/BUG line in the kernel's log during the run is a problem,
    named after the item that had just run when the guest's init saw it
    (item None: seen only at the end of the run)."""
    before = next((_int(h["taint"]) for h in health if h["when"] == "before"), None)
    after = next((_int(h["taint"]) for h in reversed(health) if h["when"] == "after"), None)
    problems, seen = [], before or 0
    for h in health:
        if h["when"] == "before":
            continue
        t = _int(h["taint"])
        new = (t & ~seen) if t is not None else 0
        if t is not None:
            seen |= t
        bad = [l for l in h["klog"] if BAD_KLOG.search(l)]
        if not new and not bad:
            continue
        what = ("an oops" if any(re.search(r"Oops|general protection fault", l) for l in bad)
                else "a BUG" if any(re.search(r"\bBUG:|kernel BUG at", l) for l in bad)
                else "a WARNING" if any("WARNING:" in l for l in bad)
                else "a kernel error" if bad else "a new taint")
        where = ("after %s" % h["after"] if h["when"] == "item" and h["after"]
                 else "during the run")
        msg = "guest kernel: %s %s" % (what, where)
        if new:
            msg += " (new taint %s, tainted=%d)" % (taint_flags(new), t)
        if bad:
            msg += ": %s" % re.sub(r"^\[[^\]]*\]\s*", "", bad[0]).strip()[:200]
        problems.append({"item": h["after"] if h["when"] == "item" else None,
                         "new_taint": taint_flags(new), "lines": bad or h["klog"][-5:],
                         "message": msg})
    return {"taint_before": before, "taint_after": after, "problems": problems}
