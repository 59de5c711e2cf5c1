"""The one parser of probe output: lines, escaping, verdict rules."""
from runner import protocol


def test_line_fields_are_unescaped():
    ev = protocol.parse_line("@SP1 obs key=a%20b value=x%25y%0Az=1")
    assert ev.kind == "obs"
    assert ev.fields == {"key": "a b", "value": "x%y\nz=1"}


def test_prefix_may_follow_console_noise():
    ev = protocol.parse_line("[    1.234] random: @SP1 end verdict=pass message=")
    assert ev.kind == "end" and ev.fields["verdict"] == "pass"


def test_non_protocol_and_garbled_lines_are_log():
    events, log = protocol.parse_stream("hello\n@SP1 obs nokeyvalue\n@SP2 end verdict=pass\n")
    assert events == []
    assert len(log) == 3


def test_listing():
    text = ("@SP1 test probe=tcp name=t1 ids=A,B families=ipv4,ipv6\n"
            "@SP1 test probe=proc name=t2 ids=C families=none\n")
    ls = protocol.parse_listing(text)
    assert [(t.name, t.ids, t.families) for t in ls] == [
        ("t1", ["A", "B"], ["ipv4", "ipv6"]), ("t2", ["C"], ["none"])]



def test_listing_slow_field_is_optional():
    text = ("@SP1 test probe=sig name=a ids=A families=none slow=1\n"
            "@SP1 test probe=sig name=b ids=A families=none\n"
            "@SP1 test probe=sig name=c ids=A families=none slow=soon\n")
    assert [t.slow for t in protocol.parse_listing(text)] == [1.0, 0.0, 0.0]


def test_probes_list_slow_tests_and_the_runner_starts_them_first():
    import subprocess
    import sys
    from conftest import ROOT
    sig = [t for t in protocol.parse_listing(subprocess.run(
        [str(ROOT / "build" / "probes" / "sig"), "--list"], capture_output=True,
        text=True).stdout) if t.slow]
    assert sig, "sig lists its real alarm() test as slow"
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "cases"], cwd=ROOT,
                         capture_output=True, text=True).stdout.splitlines()
    # Some slow test comes first (sig's or another probe's, e.g. intr's SYN
    # retransmission items).
    probe, name = out[0].split("::")[0][len("cases/"):-len(".c")], out[0].split("::")[1]
    slow = [t.name for t in protocol.parse_listing(subprocess.run(
        [str(ROOT / "build" / "probes" / probe), "--list"], capture_output=True,
        text=True).stdout) if t.slow]
    assert name.split("[")[0] in slow, out[0]


RUN = "@SP1 begin probe=p test=t family=ipv4 ids=A\n@SP1 obs key=k value=v\n"


def test_pass_with_observations():
    o = protocol.interpret(RUN + "@SP1 end verdict=pass message=\n", 0)
    assert (o.verdict, o.observations) == ("pass", {"k": "v"})


def test_fail_keeps_expected_and_observed():
    text = RUN + ("@SP1 fail at=x.c:3 expr=n expected=40 observed=10 errno= child=\n"
                  "@SP1 end verdict=fail message=x.c:3:%20n:%20expected%2040,%20observed%2010\n")
    o = protocol.interpret(text, 1)
    assert o.verdict == "fail"
    assert o.failures[0]["expected"] == "40" and o.failures[0]["observed"] == "10"
    assert "expected 40, observed 10" in o.message


def test_timeout_wins_over_everything():
    o = protocol.interpret(RUN, -9, timed_out=True, timeout_s=2)
    assert o.verdict == "timeout" and "2s" in o.message


def test_death_by_signal_is_an_error_naming_it():
    o = protocol.interpret(RUN, -11)
    assert (o.verdict, o.message) == ("error", "probe killed by SIGSEGV")


def test_truncated_stream_is_an_error():
    o = protocol.interpret(RUN, 0)
    assert o.verdict == "error" and "truncated" in o.message


def test_no_protocol_output_is_an_error():
    o = protocol.interpret("Segmentation fault\n", 0)
    assert o.verdict == "error" and "no protocol output" in o.message


def test_pass_with_nonzero_exit_is_an_error():
    o = protocol.interpret(RUN + "@SP1 end verdict=pass message=\n", 3)
    assert o.verdict == "error" and "exit status 3" in o.message


def test_unknown_verdict_is_an_error():
    o = protocol.interpret(RUN + "@SP1 end verdict=maybe message=\n", 0)
    assert o.verdict == "error"


def test_guest_stream_without_exit_status():
    o = protocol.interpret(RUN + "@SP1 end verdict=skip message=no%20ipv6\n", None)
    assert (o.verdict, o.message) == ("skip", "no ipv6")
