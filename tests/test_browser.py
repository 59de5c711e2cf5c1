"""The comparison page in a real browser (make test-browser): headless
Chromium renders compare.html, and the DOM it built shows the summary
first, naming the behaviors that differ, then the differing rows before
any identical one (which are folded). Skipped where Chromium is not
installed; `make test-browser` installs it (Debian package chromium)."""
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest

from runner import compare
from test_compare import doc, write

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                    "(make test-browser installs Debian's chromium)")


def render_dom(page, out_png=None) -> str:
    """The DOM headless Chromium built from the page (bounded)."""
    with tempfile.TemporaryDirectory(prefix="sockprobe-chromium-") as profile:
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--user-data-dir=%s" % profile]
        r = subprocess.run(args + ["--dump-dom", page.as_uri()],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        if out_png:
            subprocess.run(args + ["--screenshot=%s" % out_png, "--window-size=1200,900",
                                   page.as_uri()], capture_output=True, timeout=120)
        return r.stdout


class Rows(HTMLParser):
    """Summary text, and the table rows in document order with their class."""

    def __init__(self):
        super().__init__()
        self.rows, self.summary, self._in_summary, self.details_open = [], "", False, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("data-id"):
            self.rows.append((a.get("class"), a["data-id"]))
        if a.get("id") == "summary":
            self._in_summary = True
        if tag == "details" and a.get("id") == "same":
            self.details_open = "open" in a

    def handle_endtag(self, tag):
        if tag == "p":
            self._in_summary = False

    def handle_data(self, data):
        if self._in_summary:
            self.summary += data


@needs_chromium
def test_the_page_puts_differences_first_and_names_them(tmp_path):
    same = {"proc/z": "pass", "tcp/x[ipv6]": "pass"}
    a = write(tmp_path, "a.json", doc("6.1", dict(same, **{"tcp/x[ipv4]": "fail"})))
    b = write(tmp_path, "b.json", doc("6.12", dict(same, **{"tcp/x[ipv4]": "pass"})))
    _, differ, d = compare.compare([a, b], tmp_path)
    assert differ
    dom = render_dom(d / "compare.html", out_png=d / "compare.png")
    p = Rows()
    p.feed(dom)
    assert p.summary.startswith("1 behavior differs between systems: TCP-BOUNDARY-COALESCE")
    classes = [c for c, _ in p.rows]
    assert classes[0] == "diff" and p.rows[0][1] == "TCP-BOUNDARY-COALESCE"
    assert "same" in classes
    assert max(i for i, c in enumerate(classes) if c == "diff") < classes.index("same")
    assert p.details_open is False  # identical rows folded
