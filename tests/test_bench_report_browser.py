"""The bench report in a real headless browser: it loads, has its sections, logs no errors.

Uses Debian's `chromium` (apt-get install -y chromium). The page is loaded as
`chromium.load_page` says. The report itself never writes to the console
unless something is broken, so any console line fails the test; a page with a deliberate
console.error is loaded first to prove that such lines are seen at all.
"""

from __future__ import annotations

import re

import pytest
from chromium import load_page, needs_chromium

from gpbt.bench.report import SECTIONS, write_bench_report
from gpbt.bench.runner import run_suite
from gpbt.bench.suite import build_suite

pytestmark = [needs_chromium, pytest.mark.slow]  # a real browser: the slow lane


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A small real bench (toys: seconds) and its report."""
    suite = build_suite(
        {
            "name": "browser",
            "seeds": 3,
            "config": {"population": 4},
            "tasks": [{"toy": "quadratic"}, {"toy": "moving-optimum"}],
            "methods": [
                {"name": "gpbt-pl", "method": "gpbt-pl"},
                {"name": "pbt", "method": "pbt"},
                {"name": "random", "method": "random"},
            ],
        }
    )
    folder = tmp_path_factory.mktemp("bench")
    run_suite(suite, folder, supervise=False, progress=False)
    return write_bench_report(folder, reps=300) / "report.html"


def test_the_console_check_sees_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><script>console.error('deliberate-7421')</script><p>x</p>")
    _, console = load_page(page, tmp_path)
    assert any("deliberate-7421" in line for line in console), console


def test_bench_report_loads_with_its_sections_and_no_console_errors(report, tmp_path):
    dom, console = load_page(report, tmp_path)
    assert console == [], "console messages while loading the report:\n" + "\n".join(console)
    # the page's own load-time check: every embedded plot decoded
    assert 'data-images="ok"' in dom
    for key, title in SECTIONS:
        assert f'id="{key}"' in dom, key
        assert re.search(rf"<h2>{re.escape(title)}</h2>", dom.replace("&amp;", "&")), title
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', dom)
    assert len(images) >= 8, images
    assert "http://" not in dom and "https://" not in dom  # self-contained, nothing fetched
