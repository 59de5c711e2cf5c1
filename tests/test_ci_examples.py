"""The example CI pipelines (ci/examples/) parse as YAML, fan the targets
out as a job matrix, and every make command they run names a real target
of the Makefile with variables the Makefile reads."""
import re

import pytest

from conftest import ROOT

yaml = pytest.importorskip("yaml", reason="python3-yaml is not installed (make test installs it)")

EXAMPLES = sorted((ROOT / "ci" / "examples").glob("*.yml"))
MAKEFILE = (ROOT / "Makefile").read_text()
TARGETS = set(re.findall(r"^([a-z][a-z0-9-]*):", MAKEFILE, re.M))
# What the Makefile reads itself, and what it hands to the runner as it is
# (SP_VARS: the variables runner/config.py declares).
VARIABLES = set(re.findall(r"\$\(([A-Z][A-Z_]*)\)", MAKEFILE)) | set(
    re.search(r"^SP_VARS := ((?:.*\\\n)*.*)$", MAKEFILE, re.M).group(1).replace("\\\n", " ").split())


def commands(node):
    """Every shell line in a parsed pipeline (run: / script: entries)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("run", "script", "before_script", "after_script"):
                for line in v if isinstance(v, list) else str(v).splitlines():
                    yield str(line)
            else:
                yield from commands(v)
    elif isinstance(node, list):
        for v in node:
            yield from commands(v)


def make_calls(line):
    """(target, [VAR, ...]) for each `make ...` in a shell line."""
    for m in re.finditer(r"(?:^|[;&|]\s*|sudo\s+)make\s+([^;&|]*)", line):
        words = m.group(1).split()
        target = next((w for w in words if "=" not in w and not w.startswith("-")), None)
        vars_ = [w.split("=", 1)[0] for w in words if re.match(r"^[A-Z_]+=", w)]
        yield target, vars_


def test_there_are_examples_for_gitlab_and_github():
    assert {p.name for p in EXAMPLES} >= {"gitlab-ci.yml", "github-actions.yml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_make_call_names_a_real_target_and_variables(path):
    doc = yaml.safe_load(path.read_text())
    calls = [c for line in commands(doc) for c in make_calls(line)]
    assert {t for t, _ in calls} >= {"check", "compare"}, calls
    for target, vars_ in calls:
        assert target in TARGETS, "%s: make %s is not a target of the Makefile" % (path.name, target)
        for v in vars_:
            assert v in VARIABLES, "%s: %s is not a variable the Makefile reads" % (path.name, v)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_matrix_variables_are_real_and_one_target_per_job(path):
    text = path.read_text()
    doc = yaml.safe_load(text)
    assigned = re.findall(r"\b([A-Z][A-Z_]*)=", " ".join(
        str(v) for v in _walk(doc) if isinstance(v, str)))
    for v in assigned:
        if v in ("REPORTS",) or v in VARIABLES:
            continue
        pytest.fail("%s: %s= is not a variable the Makefile reads" % (path.name, v))
    targets = [v for v in _walk(doc, key="target") ] + [v for v in _walk(doc, key="TARGET")]
    assert len(targets) >= 4 and len(set(targets)) == len(targets)


def _walk(node, key=None):
    if isinstance(node, dict):
        for k, v in node.items():
            if key is None or k == key:
                if not isinstance(v, (dict, list)):
                    yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)
