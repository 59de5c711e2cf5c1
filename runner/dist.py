"""The bundle that runs anywhere (`make dist`) and the way back (`ingest`).

sockprobe-VERSION-ARCH.tar.gz holds one directory:

  run            the POSIX sh runner (runner/sh/run; the guest init and
                 the ssh target run the same script)
  sp-isolate     static (glibc), like every probe
  probes/*       the static probes (build/static, `make static`)
  fixtures/dns/  the fixture files the probes read (SOCKPROBE_FIXTURES)
  README

On the target: `sh run > stream` (or `-o FILE`), no Python and no
compiler. Back here: `sockprobe ingest stream` writes the usual report
directory through runner/finish.py, with the same verdicts a host run of the
same binaries gives (protocol.parse_framed reads the framing; the one
finish step, runner/finish.py, writes the report).
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import time
from pathlib import Path

from . import discover, expect, finish, protocol, rootfs
from .errors import UsageError

ROOT = discover.ROOT
FIXTURE_DIRS = ("dns",)  # fixtures/ subdirectories the probes read at run time
# ELF e_machine -> the name the bundle carries (Debian's, as in ARCH=).
MACHINES = {3: "i386", 40: "armhf", 62: "x86_64", 183: "aarch64", 243: "riscv64"}
CUT_SHORT = "the runner stopped during this item (interrupted, or the target went away)"

README = """sockprobe bundle %(name)s

Run on the target (any Linux with a POSIX sh; root or unprivileged user
namespaces for the items' own namespaces):

  sh run -o stream            every probe test, every family
  sh run -t 10 tcp udp/NAME   a selection, 10 s per item
  sh run -h                   the options

Bring `stream` back and turn it into a report:

  python3 -m runner ingest stream      (or: make ingest STREAM=stream)
"""


class DistError(UsageError):
    pass


def version() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "describe", "--tags", "--always", "--dirty"],
                       capture_output=True, text=True)
    v = r.stdout.strip() if r.returncode == 0 else ""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", v) or "0"


def arch_of(binary: Path) -> str:
    """The architecture a static binary is built for (its ELF header)."""
    with open(binary, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        raise DistError("%s is not an ELF binary" % binary)
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return MACHINES.get(machine, "elf%d" % machine)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def make_bundle(static: Path, out_dir: Path, name: str | None = None) -> Path:
    """Write sockprobe-VERSION-ARCH.tar.gz from the static build; its path."""
    iso = static / "sp-isolate"
    probes = sorted(p for p in (static / "probes").glob("*") if p.is_file()) \
        if (static / "probes").is_dir() else []
    if not iso.exists() or not probes:
        raise DistError("the static probes are not built in %s: run `make static`" % static)
    name = name or "sockprobe-%s-%s" % (version(), arch_of(iso))
    dest = out_dir / (name + ".tar.gz")
    try:
        return _write_bundle(static, iso, probes, name, dest)
    except OSError as e:
        raise DistError("cannot write %s: %s" % (dest, e.strerror or e))


def _write_bundle(static, iso, probes, name, dest) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with tarfile.open(part, "w:gz") as tar:
        _add(tar, name + "/run", rootfs.RUN.read_bytes(), 0o755)
        _add(tar, name + "/README", (README % {"name": name}).encode(), 0o644)
        _add(tar, name + "/sp-isolate", iso.read_bytes(), 0o755)
        for p in probes:
            _add(tar, "%s/probes/%s" % (name, p.name), p.read_bytes(), 0o755)
        for d in FIXTURE_DIRS:
            for f in sorted((ROOT / "fixtures" / d).rglob("*")):
                if f.is_file():
                    _add(tar, "%s/fixtures/%s" % (name, f.relative_to(ROOT / "fixtures")),
                         f.read_bytes(), 0o644)
    os.replace(part, dest)
    return dest


def header_timeout(text: str, default: float = 5.0) -> float:
    m = re.search(r"^@SP1 guest .*\btimeout=([0-9.]+)", text, re.M)
    return float(m.group(1)) if m else default


def ingest(stream: Path, reports: Path, expectations: str | None = None,
           extra_env: dict | None = None) -> tuple:
    """A stream file -> the report directory; (doc, run dir)."""
    try:
        text = stream.read_text(errors="replace")
    except OSError as e:
        raise DistError("cannot read the stream %s: %s" % (stream, e.strerror))
    if not re.search(r"^@SP1 (guest|item) ", text, re.M):
        raise DistError("%s is not a sockprobe stream (no '@SP1 guest' or '@SP1 item' line; "
                        "write one with the bundle's `sh run -o FILE`)" % stream)
    tmo = header_timeout(text)
    parsed = protocol.parse_framed(text, tmo, CUT_SHORT)
    if not parsed["results"]:
        raise DistError("the stream %s has no items: the run stopped before its first item"
                        % stream)
    env = finish.stream_environment(parsed)
    env["preload"] = None
    modes = finish.isolation_modes(parsed["results"])
    env["isolation"] = "runner (%s)" % ",".join(modes)
    env["item_isolation"] = modes
    env["timeout_s"] = tmo
    env["target"] = "bundle"
    m = re.search(r"^@SP1 guest .*\bbundle=(\S+)", text, re.M)
    env["bundle"] = m.group(1) if m else None
    env["stream"] = str(stream)
    env.update(extra_env or {})
    return finish.complete(parsed["results"], env, reports, expectations=expectations,
                           partial=not parsed["done"], started=None,
                           finished=stream.stat().st_mtime)


def print_outcome(doc: dict, d: Path) -> int:
    if doc.get("partial"):
        print("ingest: the stream ends before the run finished; partial report")
    print("\n".join(finish.lines(doc, d)))
    return finish.status(doc)


def add_arguments(sub) -> None:
    d = sub.add_parser("dist", help="make sockprobe-VERSION-ARCH.tar.gz (static probes, sh runner)")
    d.add_argument("--static", default=str(discover.BUILD / "static"),
                   help="the static build (default build/static)")
    d.add_argument("--out", default=str(discover.BUILD), help="where the tarball goes")
    i = sub.add_parser("ingest", help="a stream from the bundle's runner -> the report directory")
    i.add_argument("stream", metavar="STREAM", help="the file `sh run -o FILE` wrote")
    i.add_argument("--reports", default=str(ROOT / "reports"), help="report directory")
    i.add_argument("--expect", metavar="NAME|FILE",
                   help="known deviations (expectations/NAME.tsv or a .tsv file) become xfail")


def cmd(a) -> int:
    if a.cmd == "dist":
        path = make_bundle(Path(a.static), Path(a.out))
        print("written: %s (%d KiB)" % (path, (path.stat().st_size + 1023) // 1024))
        return 0
    exp = None
    if a.expect:
        try:
            exp = str(expect.resolve(a.expect))
            expect.load(Path(exp))
        except (expect.ExpectError, OSError) as e:
            raise DistError(str(e))
    doc, d = ingest(Path(a.stream), Path(a.reports), exp)
    return print_outcome(doc, d)
