"""Fault injection: every behavior's case can fail.

build/libspfault.so (faults/*.c) breaks one named semantic at a time
when LD_PRELOADed into the probes. For each fault below, the items covering
the catalogue IDs its row names (faults/*.c, FAULT(...)) are run with it, and every listed ID must fail (a
verdict other than pass or skip) in every family it runs for. With the
library loaded and no fault named, everything passes. Together the table
must name every ID the suite covers.

The running and the judging are the mutation campaign's (runner/mutate.py,
`make mutate`, which runs every item under every fault); this test runs
only the items each fault names, so that `make test` stays quick."""
import subprocess

import pytest

from conftest import FAULTLIB, ROOT, settings
from runner import discover, execute, faults, mutate

# The fault table lives in the library itself (FAULT(...) rows in faults/*.c).
TABLE = faults.table()
FAULTS = {f.name: set(f.ids) for f in TABLE if not f.equivalent}
ONLY = {f.name: f.only for f in TABLE}

ITEMS = discover.all_items()


def run_all(items, fault):
    return mutate.run_items(items, mutate.fault_settings(fault, library=FAULTLIB), workers=4)


def _io_uring_refused():
    """Why io_uring_setup() fails for this user here, or "" (a container
    or kernel.io_uring_disabled may refuse it)."""
    import ctypes
    import os
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)
    fd = libc.syscall(425, 1, params)          # io_uring_setup (x86-64, aarch64 alike)
    if fd >= 0:
        os.close(fd)
        return ""
    return os.strerror(ctypes.get_errno())


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_makes_its_behaviors_fail(fault):
    if fault.startswith("uring_") and _io_uring_refused():
        pytest.skip("io_uring_setup() is refused here (%s): the path this fault changes "
                    "does not run, so it cannot show" % _io_uring_refused())
    ids = FAULTS[fault]
    items = [i for i in ITEMS if ids & set(i.ids)]
    results = run_all(items, fault)
    not_failing = mutate.judge(ids, results, ONLY[fault])
    # An ID some of whose items skip here even without the fault (e.g. no
    # /proc of the item's own in a container) may not show the fault on this
    # system: it is left out, and said so, never counted as detected.
    skipped = {i for i in not_failing
               if any(r["verdict"] == "skip" for r in results if i in r["ids"])}
    unshowable = {}
    if skipped:
        again = run_all([it for it in items if skipped & set(it.ids)], None)
        unshowable = mutate.unshowable(skipped, results, again)
    for i in unshowable:
        del not_failing[i]
    assert not_failing == {}, "behaviors that still pass under fault %s" % fault
    if unshowable and unshowable.keys() >= ids:
        pytest.skip("cannot be shown here (items skip without the fault too): %s"
                    % "; ".join("%s: %s" % kv for kv in sorted(unshowable.items())))


def test_library_without_a_fault_changes_nothing():
    bad = [(r["item"], r["verdict"], r["message"]) for r in run_all(ITEMS, None)
           if r["verdict"] not in ("pass", "skip")]
    assert bad == []


def test_every_fault_says_what_it_models():
    for f in TABLE:
        assert f.models and len(f.models) > 20, f.name
        assert f.ids, f.name
        if f.equivalent:
            assert f.equivalent.strip(), f.name


def test_every_covered_behavior_has_a_fault():
    covered = {i for it in ITEMS for i in it.ids}
    named = set().union(*FAULTS.values())
    assert sorted(covered - named) == []


def test_judge_needs_every_id_in_every_family():
    """A fault is caught only when each ID it names fails in each family."""
    def r(ids, fam, verdict):
        return {"ids": ids, "family": fam, "verdict": verdict, "item": "x"}
    both = [r(["A"], "ipv4", "fail"), r(["A"], "ipv6", "broken")]
    assert mutate.judge({"A"}, both) == {}
    assert mutate.judge({"A"}, both + [r(["A"], "ipv6", "pass")]) == {}  # another item fails
    assert mutate.judge({"A"}, [r(["A"], "ipv4", "fail"), r(["A"], "ipv6", "skip")]) == {"A": ["ipv6"]}
    assert mutate.judge({"A", "B"}, both) == {"B": []}  # no item covers B
    assert mutate.judge({"P"}, [r(["P"], None, "timeout")]) == {}
    # "A[ipv4]": the fault breaks A in IPv4 alone; IPv6 is not asked.
    assert mutate.judge({"A"}, [r(["A"], "ipv4", "fail"), r(["A"], "ipv6", "pass")],
                        {"A": {"ipv4"}}) == {}
    assert mutate.judge({"A"}, [r(["A"], "ipv4", "pass")], {"A": {"ipv4"}}) == {"A": ["ipv4"]}
    skip = [dict(r(["S"], None, "skip"), message="no /proc of its own")]
    assert mutate.unshowable({"S", "A"}, skip + both, skip) == {"S": "no /proc of its own"}
    assert mutate.unshowable({"S"}, skip, [r(["S"], None, "pass")]) == {}


def test_a_family_named_id_is_parsed_and_limits_collateral():
    ids, only = faults.parse_ids(["A[ipv4]", "B", "C[none|ipv6]"])
    assert ids == {"A", "B", "C"} and only == {"A": {"ipv4"}, "C": {"none", "ipv6"}}
    row = {"ids": ["A"], "family": "ipv6", "verdict": "fail", "item": "a[ipv6]", "message": ""}
    counted, _ = mutate.collateral(ids, [row], only)
    assert [c["item"] for c in counted] == ["a[ipv6]"]     # A is broken in ipv4 alone
    assert mutate.collateral(ids, [dict(row, family="ipv4")], only)[0] == []


def test_draining_close_fails_on_the_wire_and_on_the_peers_errno():
    """close_drains_input turns the RST into a FIN: the wire check sees it,
    and with capture off the peer's errno check still catches it."""
    it = [i for i in ITEMS if i.test == "tcp_close_with_unread_input_resets_peer"
          and i.family == "ipv4"][0]
    base = {"SOCKPROBE_WAIT_MS": "500", "SOCKPROBE_FAULT": "close_drains_input"}
    wire = execute.run_item(it, settings(preload=str(FAULTLIB), extra_env=base))
    assert wire["verdict"] == "fail"
    assert wire["failures"][0]["expr"] == "wire trace"
    assert "S>C F" in wire["failures"][0]["observed"]
    errno = execute.run_item(it, settings(preload=str(FAULTLIB),
                                          extra_env=dict(base, SOCKPROBE_NO_CAPTURE="1")))
    assert errno["verdict"] == "fail"
    assert "ECONNRESET or EPIPE" in errno["message"]


def test_faults_are_one_core_and_family_files_that_use_only_it(tmp_path):
    """faults/ (issue 19): core.c holds the table, the shared helpers and
    the interposers several families join through hooks; each family
    file calls the core and nothing else (not another family's
    interposer), the core calls no family, and no file passes ~600 lines."""
    sources = sorted((ROOT / "faults").glob("*.c"))
    assert "core" in [c.stem for c in sources]
    defined, undefined = {}, {}
    for c in sources:
        assert len(c.read_text().splitlines()) <= 600, "%s is over 600 lines" % c.name
        o = tmp_path / (c.stem + ".o")
        subprocess.run(["cc", "-std=gnu11", "-pthread", "-fPIC", "-c", "-o", str(o), str(c)],
                       check=True, capture_output=True)
        nm = subprocess.run(["nm", str(o)], check=True, capture_output=True, text=True).stdout
        rows = [l.split() for l in nm.splitlines()]
        defined[c.stem] = {r[-1] for r in rows if len(r) == 3 and r[1] in "TDBR"}
        undefined[c.stem] = {r[-1] for r in rows if len(r) == 2 and r[0] == "U"}
    calls = sorted((f, g, sorted(undefined[f] & defined[g]))
                   for f in defined for g in defined
                   if f != g and g != "core" and undefined[f] & defined[g])
    assert calls == [], "calls between fault files other than into core.c"
