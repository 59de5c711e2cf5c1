"""The broken verdict in every report: a test that could not create its
situation (LTP's TBROK) is counted, set apart from failures with what was
missing, ranks between skip and fail, and in baselines counts as not shown
to hold: a regression from pass, a known deviation from broken or fail."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

from conftest import FAULTLIB, ROOT
from runner import compare, report

# sockets_start_without_buffers makes SO_RCVBUF read 0, so the UDP flow-
# control test cannot set up its small receive buffer: broken, not fail.
ITEM = "udp/udp_sender_is_not_held_back[ipv4]"
ENV = {"SOCKPROBE_FAULT": "sockets_start_without_buffers"}


def rec(item, verdict, message="", obs=None):
    test, _, fam = item.partition("[")
    return {"test": test, "item": item, "probe": test.split("/")[0],
            "ids": ["TCP-CLOSE-FLUSHES-OUTPUT"], "family": fam.rstrip("]") or None,
            "verdict": verdict, "message": message, "observations": obs or {},
            "failures": [], "isolation": "namespaces", "duration_s": 0.01}


BROKEN = rec("tcp/c[ipv4]", "broken", "TIOCOUTQ is not supported here",
             {"broken_reason": "TIOCOUTQ is not supported here", "broken_at": "tcp.c:99"})
FAILED = rec("tcp/d[ipv6]", "fail", "tcp.c:5: n: expected 1, observed 0")


def test_summary_and_terminal_set_broken_apart(tmp_path):
    doc = report.build([BROKEN, FAILED, rec("tcp/e[ipv4]", "pass")], {"kernel": "6.1.0"})
    assert doc["counts"]["broken"] == 1 and doc["counts"]["fail"] == 1
    d = report.write(doc, tmp_path)
    text = (d / "summary.md").read_text()
    row = [l for l in text.splitlines() if l.startswith("| TCP-CLOSE-FLUSHES-OUTPUT |")][0]
    assert "| broken/pass | fail | - |" in row or "| pass/broken | fail | - |" in row
    broken = text[text.index("## Broken: could not be set up"):]
    assert "`tcp/c[ipv4]`: TIOCOUTQ is not supported here (tcp.c:99)" in broken
    failing = text[text.index("## Not passing"):text.index("## Broken")]
    assert "tcp/d[ipv6]" in failing and "tcp/c[ipv4]" not in failing
    lines = report.terminal_summary(doc, d)
    assert "  BROKEN tcp/c[ipv4]: TIOCOUTQ is not supported here" in lines
    assert not any("BROKEN tcp/d" in l for l in lines)
    assert "## Broken" not in report.summary(report.build([FAILED], {}))


def test_broken_ranks_between_skip_and_fail():
    assert compare.worst(["pass", "broken", "skip"]) == "broken"
    assert compare.worst(["broken", "fail"]) == compare.worst(["fail", "broken"]) == "fail"
    assert compare.worst(["timeout", "broken"]) == "timeout"


def check(tmp_path, *args):
    env = dict(__import__("os").environ, **ENV)
    return subprocess.run([sys.executable, "-m", "runner", "check", "-q", "--preload",
                           str(FAULTLIB), "--reports", str(tmp_path / "r"), *args, ITEM],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def baseline(tmp_path, verdict):
    doc = report.build([dict(rec(ITEM, verdict), ids=["UDP-NO-FLOW-CONTROL"])], {})
    p = tmp_path / ("base-%s.json" % verdict)
    p.write_text(json.dumps(doc))
    return str(p)


def test_a_broken_run_end_to_end(tmp_path):
    r = check(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "BROKEN %s: a receive buffer much smaller" % ITEM in r.stdout
    assert "1 broken" in r.stdout
    d = tmp_path / "r" / "latest"
    res = json.loads((d / "report.json").read_text())["results"][0]
    assert res["verdict"] == "broken" and res["observations"]["broken_at"].startswith("udp.c:")
    case = next(ET.parse(d / "junit.xml").getroot().iter("testcase"))
    assert case.find("error").get("type") == "broken" and case.find("failure") is None
    assert "## Broken: could not be set up" in (d / "summary.md").read_text()
    # Against baselines: from pass it is a regression; broken or failing
    # in the baseline too, it is a known deviation.
    assert check(tmp_path, "--baseline", baseline(tmp_path, "pass")).returncode == 1
    assert check(tmp_path, "--baseline", baseline(tmp_path, "broken")).returncode == 0
    assert check(tmp_path, "--baseline", baseline(tmp_path, "fail")).returncode == 0


def test_a_fixture_dns_server_that_cannot_serve_is_broken_not_a_failure(tmp_path):
    """The DNS items need their fixture server: one that exits at once or
    cannot be run at all (a binary of another architecture in a guest
    root) makes the item broken with the reason, at once, never a failed
    lookup and never a wait until the item's timeout."""
    text = tmp_path / "not-a-program"
    text.write_text("plain text, executable: exec() fails with ENOEXEC\n")
    text.chmod(0o755)
    for stand_in, says in (("/bin/false", "exited (status 1)"),
                           (str(text), "(it could not be run here)")):
        r = subprocess.run([str(ROOT / "build" / "sp-isolate"), "--timeout", "20",
                            "--bind", "%s:/usr/sbin/dnsmasq" % stand_in, "--",
                            str(ROOT / "build" / "probes" / "dns"), "--run",
                            "gethostbyname_asks_the_fixture_server", "--family", "none"],
                           capture_output=True, text=True, timeout=60)
        end = [l for l in r.stdout.splitlines() if l.startswith("@SP1 end ")]
        assert end and end[0].startswith("@SP1 end verdict=broken "), r.stdout
        assert says.replace(" ", "%20") in end[0], end[0]


# ---- broken (needs ID): the item depends on another ID's behavior --------

NEEDS_STREAM = """\
@SP1 isolation mode=namespaces reason=user+net+pid+mount proc=own user=yes net=yes pid=yes mount=no
@SP1 begin probe=epoll test=rdhup family=ipv4 ids=EPOLL-RDHUP
@SP1 broken at=epoll.c:40 reason=no%20FIN%20through%20half-close needs=CLOSE-HALF-WR-EOF
@SP1 end verdict=broken message=no%20FIN%20through%20half-close
"""


def test_a_broken_line_naming_what_it_needs_is_shown_everywhere(tmp_path):
    from runner import execute, finish, ktap, protocol, records
    out = protocol.interpret(NEEDS_STREAM, 0)
    it = records.Item("epoll", "", "rdhup", "ipv4", ["EPOLL-RDHUP"])
    r = records.result_record(it, out, 0.0, "")
    assert r["verdict"] == "broken" and r["needs"] == "CLOSE-HALF-WR-EOF"
    assert r["isolation"] == "namespaces"
    assert r["isolation_parts"] == {"proc": "own", "user": "yes", "net": "yes", "pid": "yes",
                                    "mount": "no"}
    assert execute.Item is records.Item
    doc = report.build([r, rec("tcp/e[ipv4]", "pass")], {"kernel": "6.1.0"})
    d = report.write(doc, tmp_path)
    text = (d / "summary.md").read_text()
    assert "broken (needs CLOSE-HALF-WR-EOF)" in text
    assert "`epoll/rdhup[ipv4]` (needs CLOSE-HALF-WR-EOF): no FIN" in text
    assert "  BROKEN (needs CLOSE-HALF-WR-EOF) epoll/rdhup[ipv4]: no FIN through half-close" \
        in finish.lines(doc, d)
    err = ET.parse(d / "junit.xml").getroot().find(".//error")
    assert err.get("type") == "broken" and err.get("message").startswith("needs CLOSE-HALF-WR-EOF")
    assert "# BROKEN needs CLOSE-HALF-WR-EOF" in ktap.render(doc)
    t = compare.table(compare.systems([doc, report.build([rec("tcp/e[ipv4]", "pass")], {})],
                                      ["a", "b"]))
    assert t["rows"][("EPOLL-RDHUP", "ipv4")][0][0] == "broken (needs CLOSE-HALF-WR-EOF)"


def test_an_isolation_line_without_parts_keeps_the_old_record():
    from runner import protocol, records
    out = protocol.interpret("@SP1 isolation mode=host reason=off\n@SP1 begin x=1\n"
                             "@SP1 end verdict=pass message=\n", 0)
    r = records.result_record(records.Item("p", "", "t", "none", []), out, 0.0, "")
    assert "isolation_parts" not in r and r["isolation_reason"] == "off"


def test_a_failed_check_names_its_variant_in_the_message():
    from runner import protocol
    out = protocol.interpret(
        "@SP1 begin probe=tcp test=t family=ipv4 ids=X\n"
        "@SP1 fail at=tcp.c:9 expr=n expected=1 observed=0 variant=stream.writev.recvmsg\n"
        "@SP1 end verdict=fail message=tcp.c:9:%20n\n", 1)
    assert out.verdict == "fail" and out.failures[0]["variant"] == "stream.writev.recvmsg"
    assert out.message == "tcp.c:9: n (variant stream.writev.recvmsg)"
