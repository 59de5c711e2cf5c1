"""The mutation campaign (`make mutate`, runner/mutate.py): every fault
against the suite, a table, a score, reports, and exit 1 on an escape."""
import json
import subprocess
import sys

from conftest import FAULTLIB, ROOT
from runner import discover, faults, mutate

UDP_TRUNC = [i for i in discover.all_items() if i.test == "udp_short_buffer_truncates_datagram"]


def test_a_fault_that_breaks_its_id_is_caught_and_one_that_does_not_escapes(tmp_path):
    table = [faults.Fault("dgram_recv_keeps_tail", frozenset({"UDP-TRUNCATE"}), "kept tail model", None),
             faults.Fault("dgram_drops_empty", frozenset({"UDP-TRUNCATE"}), "empty datagram model", None),
             faults.Fault("some_equivalent", frozenset({"UDP-TRUNCATE"}), "a model",
                          "nothing observable changes")]
    with open(tmp_path / "progress", "w") as out:
        doc = mutate.campaign(table, UDP_TRUNC, workers=2, library=FAULTLIB, out=out)
    rows = {r["name"]: r for r in doc["faults"]}
    assert rows["dgram_recv_keeps_tail"]["result"] == "caught"
    assert rows["dgram_recv_keeps_tail"]["failed_items"] == sorted(i.name for i in UDP_TRUNC)
    assert rows["dgram_drops_empty"]["result"] == "ESCAPED"
    assert rows["dgram_drops_empty"]["still_passing"] == {"UDP-TRUNCATE": ["ipv4", "ipv6"]}
    assert rows["some_equivalent"]["result"] == "equivalent"
    assert doc["score"] == {"caught": 1, "non_equivalent": 2, "equivalent": 1,
                            "escaped": ["dgram_drops_empty"], "unshowable": [],
                            "collateral": 0, "collateral_faults": []}
    assert rows["dgram_recv_keeps_tail"]["collateral"] == []
    assert doc["no_fault"]["failed_items"] == []
    assert "ETA" in (tmp_path / "progress").read_text()
    text = mutate.render_text(doc)
    assert ("score: 1/2 non-equivalent faults caught (50.0%), 1 equivalent, 1 ESCAPED: "
            "dgram_drops_empty; 0 collateral failures" in text)
    assert "some_equivalent: nothing observable changes" in text
    d = mutate.write(doc, tmp_path)
    assert json.loads((d / "mutate.json").read_text())["schema"] == mutate.SCHEMA
    md = (d / "mutate.md").read_text()
    assert "| `dgram_drops_empty` | UDP-TRUNCATE | empty datagram model | ESCAPED" in md
    assert "## Equivalent faults" in md


def test_a_failure_outside_the_faults_ids_is_collateral_and_counted(tmp_path):
    """The same fault declared for another ID: the items it makes fail
    are not about that ID, so each is a collateral failure, shown with its
    item, IDs and message, and counted on the score line."""
    table = [faults.Fault("dgram_recv_keeps_tail", frozenset({"UDP-BOUNDARY"}), "kept tail model", None)]
    with open(tmp_path / "progress", "w") as out:
        doc = mutate.campaign(table, UDP_TRUNC, workers=2, library=FAULTLIB, out=out)
    (row,) = doc["faults"]
    assert [c["item"] for c in row["collateral"]] == sorted(i.name for i in UDP_TRUNC)
    assert all(c["ids"] == ["UDP-TRUNCATE"] and c["verdict"] == "fail" and c["message"]
               for c in row["collateral"])
    assert doc["score"]["collateral"] == len(UDP_TRUNC)
    assert doc["score"]["collateral_faults"] == ["dgram_recv_keeps_tail"]
    text = mutate.render_text(doc)
    assert "; %d collateral failures" % len(UDP_TRUNC) in text
    assert "COLLATERAL fail %s [UDP-TRUNCATE]: " % UDP_TRUNC[0].name in text
    md = (mutate.write(doc, tmp_path) / "mutate.md").read_text()
    assert "## Outside the faults' IDs" in md
    assert "| `dgram_recv_keeps_tail` | `%s` | UDP-TRUNCATE | fail | collateral |" % (
        sorted(i.name for i in UDP_TRUNC)[0]) in md


def test_collateral_counts_fail_outside_the_ids_and_only_shows_broken():
    def r(item, ids, verdict, message="m"):
        return {"item": item, "ids": ids, "verdict": verdict, "message": message}
    results = [r("a", ["A"], "fail"),             # its own ID: attributed
               r("ab", ["A", "B"], "fail"),       # one of its IDs is the fault's
               r("b", ["B"], "fail", "saw x, expected y"),
               r("c", ["C"], "broken", "needs A"),
               r("d", ["D"], "timeout"),
               r("e", ["E"], "pass"), r("f", ["F"], "skip")]
    counted, shown = mutate.collateral({"A"}, results)
    assert counted == [{"item": "b", "ids": ["B"], "verdict": "fail",
                        "message": "saw x, expected y"}]
    assert [(s["item"], s["verdict"]) for s in shown] == [("c", "broken"), ("d", "timeout")]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "runner", "mutate", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_mutate_cli_writes_reports_and_exits_0_when_all_are_caught(tmp_path):
    r = run_cli("--reports", str(tmp_path), "dgram_recv_keeps_tail", "recvmsg_drops_source")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "score: 2/2 non-equivalent faults caught (100.0%)" in r.stdout
    assert "collateral failures" in r.stdout
    assert "ETA" in r.stdout
    (d,) = tmp_path.glob("mutate-*")
    assert (d / "mutate.md").exists() and (d / "mutate.json").exists()


def test_mutate_cli_errors_are_one_line(tmp_path):
    for args, needle in ((["no_such_fault"], "unknown fault(s): no_such_fault"),
                         (["--wait-ms", "0"], "must be positive")):
        r = run_cli("--reports", str(tmp_path), *args)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
