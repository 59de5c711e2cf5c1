"""Items and result records: what runs, and the one record format every
target yields and every report reads (README, "Result records").

An Item names one probe test in one address family. A result record is
built here from the protocol's Outcome (runner/protocol.py), whoever ran
the item: the host runner (runner/execute.py) or a stream from a guest,
a bundle or a remote (protocol.parse_framed)."""
from __future__ import annotations

from dataclasses import dataclass



# Fields of the `@SP1 isolation` line that are not its parts.

_ISOLATION_HEAD = ("mode", "reason")
_ISOLATION_OLD = {"mode", "reason", "proc"}


@dataclass
class Item:
    probe: str      # "tcp"
    binary: str     # path of the probe binary
    test: str       # test name
    family: str     # "ipv4", "ipv6" or "none"
    ids: list
    slow: float = 0.0  # wall time spent by design (`slow` on the --list line)
    bound: float = 0.0  # wait allowed where the system deviates (`bound`): its timeout is longer

    @property
    def name(self) -> str:
        """The item's id in reports: tcp/close_discards_input[ipv6]."""
        fam = "" if self.family == "none" else "[%s]" % self.family
        return "%s/%s%s" % (self.probe, self.test, fam)


def result_record(item: Item, outcome, duration: float, stderr: str) -> dict:
    """The report's record of one run of one item (outcome: a
    protocol.Outcome)."""
    iso = outcome.isolation
    rec = {
        "test": item.name.split("[")[0],
        "item": item.name,
        "probe": item.probe,
        "ids": list(item.ids),
        "family": None if item.family == "none" else item.family,
        "verdict": outcome.verdict,
        "message": outcome.message,
        "observations": outcome.observations,
        "failures": outcome.failures,
        "isolation": iso.get("mode", "none"),
        "duration_s": round(duration, 4),
    }
    if iso.get("mode") == "host" or iso.get("proc") == "outer":
        # host mode, or namespaces whose own /proc could not be mounted
        rec["isolation_reason"] = iso.get("reason", "")
    if set(iso) - _ISOLATION_OLD:
        # sp-isolate names each part it made (user=, net=, pid=, mount=, proc=)
        rec["isolation_parts"] = {k: v for k, v in iso.items() if k not in _ISOLATION_HEAD}
    if outcome.paths:
        rec["paths"] = outcome.paths
    if outcome.verdict == "broken" and outcome.needs:
        rec["needs"] = outcome.needs
    if outcome.verdict in ("fail", "error", "timeout", "broken"):
        tail = (outcome.log + [l for l in stderr.splitlines() if l.strip()])[-20:]
        rec["log"] = tail
    return rec
