"""The behavior catalogue: IDs with their Must/Record text.

The project keeps a copy in fixtures/behaviors.md; the seed copy in
../shared/seed/behaviors.md, where present, is the one in force (a project
test checks that the two agree)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "seed" / "behaviors.md"
COPY = ROOT / "fixtures" / "behaviors.md"
_ID = re.compile(r"^- \*\*([A-Z0-9-]+)\*\*\s*(.*)$")


def path() -> Path:
    return SEED if SEED.is_file() else COPY


def load(p: Path | None = None) -> dict:
    """{ID: first line of its description}, in catalogue order."""
    out = {}
    for line in (p or path()).read_text(encoding="utf-8").splitlines():
        m = _ID.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out
