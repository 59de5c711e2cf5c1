"""The behavior catalogue: IDs with their Must/Record text.

The catalogue has three parts: behaviors.md (the notes' behaviors),
behaviors-2.md (the textbook's remaining socket chapters and what
applications rely on) and behaviors-3.md (what applications rely on and
where emulators, sandboxes and other stacks break it). The project keeps copies in fixtures/; the seed
copies in ../shared/seed/, where present, are the ones in force (a project
test checks that they agree)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("behaviors.md", "behaviors-2.md", "behaviors-3.md")
SEED_DIR = ROOT.parent / "shared" / "seed"
COPY_DIR = ROOT / "fixtures"
SEED = SEED_DIR / PARTS[0]
COPY = COPY_DIR / PARTS[0]
_ID = re.compile(r"^- \*\*([A-Z0-9-]+)\*\*\s*(.*)$")


def paths() -> list:
    """The catalogue's parts, seed copies where present."""
    return [SEED_DIR / p if (SEED_DIR / p).is_file() else COPY_DIR / p for p in PARTS]


def path() -> Path:
    return paths()[0]


def load(p: Path | None = None) -> dict:
    """{ID: first line of its description}, in catalogue order (both parts
    unless one file is named)."""
    out = {}
    for f in [p] if p else paths():
        for line in f.read_text(encoding="utf-8").splitlines():
            m = _ID.match(line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


OTHER = "Other"
_CHAPTER = re.compile(r"^## (.+?)\s*$")


def chapters() -> "dict[str, list]":
    """{chapter: [IDs]}: the catalogue's `##` headings in order (every
    part), each with the IDs listed under it."""
    out = {}
    for f in paths():
        cur = None
        for line in f.read_text(encoding="utf-8").splitlines():
            m = _CHAPTER.match(line)
            if m:
                cur = out.setdefault(m.group(1), [])
                continue
            m = _ID.match(line)
            if m and cur is not None:
                cur.append(m.group(1))
    return out


def chapter_of() -> "dict[str, str]":
    """{ID: its chapter}; an ID outside the catalogue belongs to OTHER."""
    return {i: c for c, ids in chapters().items() for i in ids}


def short(chapter: str) -> str:
    """A chapter heading without its source note: `TCP (notes: ...)` -> `TCP`."""
    return re.sub(r"\s*\((notes|textbook)[^)]*\)\s*$", "", chapter)
