"""The suite against its catalogue: every ID covered, case files that read
like specifications (header lists their IDs), no sleeping to synchronise."""
import re

import pytest

from conftest import ROOT
from runner import catalogue, discover

# Catalogue families the suite covers so far.
IMPLEMENTED = ("TCP-", "UDP-", "CLOSE-", "PROC-", "SIG-", "PIPE-", "DNS-",
               "THREAD-", "UNIX-", "MCAST-", "EPOLL-", "MUX-", "STDIO-",
               "OPT-", "CONN-", "FLAG-", "INTR-", "TIMEO-", "LISTEN-", "REUSEPORT-",
               "IOCTL-", "RECV-", "STATE-", "EXEC-", "UNIXX-", "ADDR-",
               "CMSG-", "MMSG-", "ZC-", "EPOLLX-", "TCPOPT-")


def listed():
    return {src.stem: discover.list_tests(discover.probe_binary(src.stem))
            for src in sorted(discover.CASES.glob("*.c"))}


@pytest.mark.parametrize("part", catalogue.PARTS)
def test_project_copy_matches_the_seed_catalogue(part):
    seed = catalogue.SEED_DIR / part
    if not seed.is_file():
        pytest.skip("no ../shared/seed/%s beside the checkout" % part)
    assert (catalogue.COPY_DIR / part).read_text() == seed.read_text()


def test_every_implemented_catalogue_id_is_covered():
    covered = {i for ts in listed().values() for t in ts for i in t.ids}
    wanted = [i for i in catalogue.load() if i.startswith(IMPLEMENTED)]
    assert [i for i in wanted if i not in covered] == []
    unknown = covered - set(catalogue.load())
    assert unknown == set(), "IDs not in the catalogue"


def test_test_names_are_behaviors_and_unique():
    for probe, ts in listed().items():
        names = [t.name for t in ts]
        assert len(names) == len(set(names)), probe
        for n in names:
            assert re.fullmatch(r"[a-z][a-z0-9_]+", n) and n.count("_") >= 2, n


def test_case_headers_name_every_id_they_cover():
    for probe, ts in listed().items():
        src = (discover.CASES / (probe + ".c")).read_text()
        header = src[:src.index("*/")]
        for t in ts:
            for i in t.ids:
                assert i in header, "%s.c header does not mention %s" % (probe, i)


SLEEPY = re.compile(r"\b(u?sleep|nanosleep|clock_nanosleep)\s*\(")


def test_no_case_or_fixture_synchronises_with_sleep():
    for path in list(discover.CASES.glob("*.c")) + list((ROOT / "fixtures").glob("*.c")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = re.sub(r'"(\\.|[^"\\])*"', '""', line)  # not inside strings
            if SLEEPY.search(code) and "SIG-INTERRUPTS-SLEEP" not in line:
                pytest.fail("%s:%d sleeps: %s" % (path.name, n, line.strip()))


def test_probes_bind_only_loopback():
    for path in list(discover.CASES.glob("*.c")) + list((ROOT / "fixtures").glob("*.c")):
        text = path.read_text()
        if "sp_require_private_net()" in text and path.parent == discover.CASES:
            continue  # wildcard binds only in the item's own network namespace
        assert "INADDR_ANY" not in text and "in6addr_any" not in text, path.name
