"""The report in a real browser: headless Chromium (Debian's `chromium` package, nothing downloaded)
opens the page of a small run; the rendered DOM shows the funnel numbers and a rejected record's reason,
the markup a teacher reply planted stays text, and a screenshot is saved."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from report_helpers import make_run

from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.store import StageStore
from pocketguide.report.collect import build_report_data
from pocketguide.report.html import render_page, write_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed here (Debian: apt-get install "
                                                         "chromium; .ci/run installs it)")
# no sandbox (root in CI); no background networking, so the browser makes no connection of its own
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium once; fails on a script error or a blocked (CSP) action in the page."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                           *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Content Security Policy" in line], console
    return done.stdout


def funnel_rows(dom: str) -> dict[str, dict[str, str]]:
    rows = {}
    for stage, cells in re.findall(r'<tr data-stage="([^"]+)">(.*?)</tr>', dom):
        rows[stage] = dict(re.findall(r'<td class="n (in|accepted|rejected)">([^<]*)</td>', cells))
    return rows


def body_attributes(dom: str) -> str:
    return re.search(r"<body([^>]*)>", dom).group(1)


@pytest.fixture
def page(tmp_path):
    pipe = load_pipeline(make_run(tmp_path / "proj"))
    data = build_report_data(pipe)
    return pipe, data, write_page(data, tmp_path / "out")


def test_the_page_renders_the_run_and_no_planted_script_runs(page, tmp_path):
    pipe, _, path = page
    url = path.as_uri() + "#browse:status=rejected&open=answers%2Fq3"
    dom = chromium(tmp_path, "--dump-dom", url)
    assert "data-ready-ms" in body_attributes(dom), "the page's own script ran to the end"
    # the funnel in the DOM is what the store holds
    for stage in ("questions", "answers"):
        store = StageStore(pipe.data_dir, stage)
        want = {"accepted": str(len(list(store.accepted()))), "rejected": str(len(list(store.rejected())))}
        assert {k: funnel_rows(dom)[stage][k] for k in want} == want
    assert funnel_rows(dom)["answers"]["in"] == "5"
    # each reason bar links to its records
    assert '<a href="#browse:stage=answers&amp;reason=parse_failed">' in dom
    # the filter from the address applies, and the opened rejected record shows its reason and raw output
    assert "showing 1–3 of 3 matching records" in dom
    detail = dom.split('id="record-detail"', 1)[1]
    assert "trace of answers/q3: 2 records across stages" in detail
    assert '<span class="reason">parse_failed</span>' in detail
    assert "&lt;script&gt;document.body.setAttribute(\"data-pwned\", \"script\")&lt;/script&gt;&lt;img src=x" in detail
    # nothing planted became markup or ran: no attribute set, no extra element
    assert "data-pwned" not in body_attributes(dom)
    assert "<img" not in dom and dom.count("<script") == 2

    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


def test_escaping_alone_keeps_planted_markup_inert(page, tmp_path):
    """The same page without its Content-Security-Policy: the escaping, not the policy, stops the payload."""
    _, data, _ = page
    bare = tmp_path / "bare.html"
    bare.write_text(render_page(data, csp=False))
    dom = chromium(tmp_path, "--dump-dom", bare.as_uri() + "#browse:open=answers%2Fq3")
    assert "data-ready-ms" in body_attributes(dom) and "data-pwned" not in body_attributes(dom)
    assert "<img" not in dom and dom.count("<script") == 2
    # the accepted record whose JSON holds </script><script>… is listed as text
    assert "{\"answer\": \"&lt;/script&gt;&lt;script&gt;document.body.setAttribute" in dom
