"""Fault injection: every behavior's case can fail.

build/libspfault.so (faults/spfault.c) breaks one named semantic at a time
when LD_PRELOADed into the probes. For each fault below, the items covering
the listed catalogue IDs are run with it, and every listed ID must fail (a
verdict other than pass or skip) in every family it runs for. With the
library loaded and no fault named, everything passes. Together the table
must name every ID the suite covers."""
import collections
import concurrent.futures as cf

import pytest

from conftest import FAULTLIB, settings
from runner import discover, execute

FAULTS = {
    "read_caps_at_10": {"TCP-BOUNDARY-COALESCE"},
    "stream_read_drops_rest": {"TCP-BOUNDARY-SPLIT"},
    "sockets_start_without_buffers": {"TCP-BUFFERS-AT-CREATION"},
    "close_discards_output": {"TCP-CLOSE-FLUSHES-OUTPUT", "TCP-TEARDOWN-STATES",
                              "CLOSE-FULL-LOSES-REPLY"},
    "close_drains_input": {"TCP-CLOSE-DISCARDS-INPUT"},
    "write_ignores_full_buffer": {"TCP-FLOW-CONTROL", "PROC-SPLIT-IO"},
    "write_waits_for_peer_read": {"TCP-WRITE-RETURNS-BUFFERED"},
    "connect_needs_accept": {"TCP-HANDSHAKE-BEFORE-ACCEPT"},
    "no_implicit_bind": {"TCP-CONNECT-IMPLICIT-BIND", "UDP-SENDTO-IMPLICIT-BIND"},
    "accept_repeats_first": {"TCP-LISTEN-ACCEPT-SEQUENCE"},
    "dgram_recv_merges": {"UDP-BOUNDARY"},
    "dgram_no_trunc_flag": {"UDP-TRUNCATE"},
    "dgram_send_backpressure": {"UDP-NO-FLOW-CONTROL"},
    "dgram_send_refused": {"UDP-NO-ACK"},
    "recvfrom_hides_source": {"UDP-ONE-SOCKET-MANY-PEERS"},
    "dgram_remembers_destination": {"UDP-DESTINATION-EACH-SEND"},
    "udp_connect_noop": {"UDP-CONNECTED"},
    "shutdown_wr_closes_both": {"CLOSE-HALF-WR-EOF"},
    "shutdown_ignored": {"CLOSE-HALF-WR-NO-MORE-WRITES", "CLOSE-HALF-RD"},
    "close_is_half_close": {"CLOSE-FULL-LOSES-REPLY"},
    # processes
    "fork_child_gets_pid": {"PROC-FORK-RETURNS"},
    "private_memory_shared": {"PROC-FORK-COPIES"},
    "close_shuts_down_shared_socket": {"PROC-FORK-SHARES-FDS", "PROC-FORKING-SERVER"},
    "sigchld_ignored": {"PROC-ZOMBIE", "SIG-CHLD-REAPS-ALL"},
    "status_loses_exit_code": {"PROC-WAIT-REAPS", "PROC-WAITPID-WNOHANG",
                               "SIG-CHLD-REAPS-ALL"},
    "wait_never_blocks": {"PROC-WAIT-BLOCKS"},
    "waitpid_ignores_wnohang": {"PROC-WAITPID-WNOHANG"},
    # signals
    "handlers_not_installed": {"SIG-HANDLER-RUNS", "SIG-INTERRUPTS-SLEEP"},
    "sleep_restarts": {"SIG-INTERRUPTS-SLEEP"},
    # pipes
    "pipe_ends_swapped": {"PIPE-ENDS", "PIPE-TWO-WAY"},
    "empty_pipe_reads_eof": {"PIPE-ACROSS-FORK", "PIPE-EOF"},
    "sigpipe_ignored": {"PIPE-EPIPE"},
    "pipe_writes_in_pieces": {"PIPE-ATOMIC"},
    # names
    "resolver_drops_aliases": {"DNS-BYNAME"},
    "resolver_answers_without_server": {"DNS-FIXTURE-SERVER"},
    "reverse_lookup_fails": {"DNS-BYADDR"},
    "unknown_name_try_again": {"DNS-NOT-FOUND"},
}

ITEMS = discover.all_items()


def run_all(items, fault):
    extra = {"SOCKPROBE_WAIT_MS": "500"}
    if fault:
        extra["SOCKPROBE_FAULT"] = fault
    s = settings(preload=str(FAULTLIB), extra_env=extra)
    with cf.ThreadPoolExecutor(4) as ex:
        return list(ex.map(lambda i: execute.run_item(i, s), items))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_makes_its_behaviors_fail(fault):
    ids = FAULTS[fault]
    items = [i for i in ITEMS if ids & set(i.ids)]
    results = run_all(items, fault)
    failing = collections.defaultdict(set)   # id -> families with a failing item
    families = collections.defaultdict(set)  # id -> families run
    for r in results:
        for i in set(r["ids"]) & ids:
            families[i].add(r["family"])
            if r["verdict"] not in ("pass", "skip"):
                failing[i].add(r["family"])
    not_failing = {i: sorted(map(str, families[i] - failing[i])) for i in ids
                   if families[i] - failing[i] or not families[i]}
    assert not_failing == {}, "behaviors that still pass under fault %s" % fault


def test_library_without_a_fault_changes_nothing():
    bad = [(r["item"], r["verdict"], r["message"]) for r in run_all(ITEMS, None)
           if r["verdict"] not in ("pass", "skip")]
    assert bad == []


def test_every_covered_behavior_has_a_fault():
    covered = {i for it in ITEMS for i in it.ids}
    named = set().union(*FAULTS.values())
    assert sorted(covered - named) == []


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
