"""The fault table of build/libspfault.so (faults/*.c, FAULT(...) rows).

The library is the one list of faults: each row names the fault, the
catalogue IDs it must make fail, the kind of real system or bug it models,
and, for an equivalent fault, why no program can observe it."""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from . import discover

LIBRARY = discover.BUILD / "libspfault.so"


@dataclass(frozen=True)
class Fault:
    name: str
    ids: frozenset          # the catalogue IDs it breaks
    models: str
    equivalent: str | None
    # ID -> the families in which alone it breaks that ID's Musts, for an
    # ID named "ID[family]" (an IPv4-only option, the family-less item of
    # an ID whose others are per family); an ID absent here: every family.
    only: dict = None

    @property
    def named(self) -> list:
        """The IDs as the FAULT row names them (with their [family])."""
        only = self.only or {}
        return sorted("%s[%s]" % (i, "|".join(sorted(only[i]))) if i in only else i
                      for i in self.ids)


def parse_ids(names) -> tuple:
    """("ID", "ID[fam]", ...) -> (frozenset of IDs, {ID: frozenset of families})."""
    ids, only = set(), {}
    for n in names:
        base, _, fams = n.partition("[")
        ids.add(base)
        if fams:
            only[base] = frozenset(fams.rstrip("]").split("|"))
    return frozenset(ids), only


class _Row(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("ids", ctypes.c_char_p),
                ("models", ctypes.c_char_p), ("equivalent", ctypes.c_char_p)]


def table(library=LIBRARY) -> list:
    """Every fault the library declares, in name order. The library is
    read in a child process: it is never mapped into this one."""
    r = subprocess.run([sys.executable, "-m", "runner.faults", os.fspath(library)],
                       cwd=discover.ROOT, capture_output=True, text=True, check=True)
    out = [Fault(name, *_ids_only(ids, models, equiv))
           for name, ids, models, equiv in json.loads(r.stdout)]
    names = [f.name for f in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError("faults declared twice: %s" % ", ".join(dup))
    return sorted(out, key=lambda f: f.name)


def _ids_only(names, models, equiv) -> tuple:
    ids, only = parse_ids(names)
    return ids, models, equiv, only


def _read_rows(library) -> list:
    lib = ctypes.CDLL(os.fspath(library), mode=os.RTLD_LOCAL | os.RTLD_LAZY)
    fn = lib.spfault_table
    fn.restype = ctypes.POINTER(_Row)
    n = ctypes.c_int(0)
    rows = fn(ctypes.byref(n))
    out = []
    for i in range(n.value):
        r = rows[i]
        out.append((r.name.decode(), [x for x in r.ids.decode().split(",") if x],
                    r.models.decode(), r.equivalent.decode() if r.equivalent else None))
    return out


if __name__ == "__main__":
    print(json.dumps(_read_rows(sys.argv[1])))
