"""Discovery: which probes exist, what tests they list, what the probes
report of the system they run on."""
from __future__ import annotations

import subprocess
from pathlib import Path

from . import arch, protocol
from .errors import UsageError
from .records import Item

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "cases"
BUILD = ROOT / "build"


class DiscoveryError(UsageError):
    pass


def probe_binary(stem: str, build: Path = BUILD) -> Path:
    return build / "probes" / stem


def list_tests(binary: Path) -> list:
    """The probe's own list of tests (`probe --list`)."""
    if not binary.exists():
        raise DiscoveryError("%s is not built: run `make` (or `make check`) first" % binary)
    try:
        out = subprocess.run(arch.emulator(binary) + [str(binary), "--list"],
                             capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired, arch.ArchError) as e:
        raise DiscoveryError("%s --list failed: %s" % (binary, e))
    listing = protocol.parse_listing(out.stdout.decode("utf-8", "replace"))
    if out.returncode != 0 or not listing:
        raise DiscoveryError("%s --list gave no tests (exit %d)" % (binary, out.returncode))
    return listing


def items_of(binary: Path, families=None) -> list:
    out = []
    for t in list_tests(binary):
        for fam in t.families:
            if families and fam != "none" and fam not in families:
                continue
            out.append(Item(probe=t.probe, binary=str(binary), test=t.name,
                            family=fam, ids=t.ids, slow=t.slow, bound=t.bound))
    return out


def all_items(build: Path = BUILD, families=None) -> list:
    items = []
    for src in sorted(CASES.glob("*.c")):
        items += items_of(probe_binary(src.stem, build), families)
    return items


def select(tests, build: Path = BUILD, families=()) -> list:
    """TEST words (a probe `tcp`, a test `tcp/NAME`, an item
    `tcp/NAME[ipv6]`) -> [(word, [items])], checked once for every target:
    an unknown probe or test, or a selection with no item of the asked
    family, is one UsageError. The probes are the ones built in build."""
    probes = sorted(p for p in (build / "probes").iterdir()) if (build / "probes").is_dir() else []
    items = [i for p in probes for i in items_of(p)]
    out = []
    for t in tests:
        probe, _, rest = t.partition("/")
        matches = [i for i in items if i.probe == probe and
                   (not rest or rest in (i.test, i.name.split("/", 1)[1]))]
        if not matches:
            known = sorted({i.probe for i in items})
            if probe not in known:
                raise UsageError("unknown probe '%s' (probes: %s; `make list` shows every test)"
                                 % (probe, ", ".join(known)))
            raise UsageError("unknown test '%s' (`make list` shows every test)" % t)
        if families:
            matches = [i for i in matches if i.family in families or i.family == "none"]
            if not matches:
                raise UsageError("'%s' has no item of family %s" % (t, ", ".join(families)))
        out.append((t, matches))
    return out


def probe_environment(build: Path = BUILD, isolate: str | None = None,
                      host_only: bool = False) -> dict:
    """`probe --env` from the first probe, run the way items run (inside
    the namespaces, so net.* values are the ones the probes saw)."""
    for src in sorted(CASES.glob("*.c")):
        binary = probe_binary(src.stem, build)
        if not binary.exists():
            continue
        try:
            cmd = (arch.isolated if isolate and not host_only else arch.emulator)(binary) + \
                [str(binary), "--env"]
        except arch.ArchError:
            continue
        if isolate:
            cmd = [isolate] + (["--host"] if host_only else []) + ["--"] + cmd
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=10,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = out.stdout.decode("utf-8", "replace")
        env = protocol.parse_env(text)
        events, _ = protocol.parse_stream(text)
        for ev in events:
            if ev.kind == "isolation":
                env["isolation"] = ev.fields.get("mode", "")
                if ev.fields.get("mode") == "host" or ev.fields.get("proc") == "outer":
                    env["isolation_reason"] = ev.fields.get("reason", "")
        return env
    return {}
