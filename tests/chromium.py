"""Loading a report in a real headless browser (Debian's `chromium`), shared by the browser tests.

The page is loaded from disk with every network feature off; `--dump-dom` gives the DOM after
the load event (so a page's own check that every embedded figure decoded has run) and
`--enable-logging=stderr` puts every console message and uncaught exception on stderr as
`CONSOLE` lines.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian: apt-get install -y chromium); "
    "the browser checks of the reports need it",
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
]


def load_page(path, tmp_path) -> tuple[str, list[str]]:
    """(DOM after load, console lines) of a local HTML file."""
    profile = tmp_path / f"profile-{path.stem}"
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console
