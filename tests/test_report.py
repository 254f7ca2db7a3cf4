"""`gpbt report FOLDER`: a real page (headings, tables, figures that load) checked in headless
Chromium on a tiny vector run, log axes where the space is log, and clear errors."""

from __future__ import annotations

import copy
import re

import pytest
from chromium import load_page, needs_chromium
from conftest import tiny_vector
from PIL import Image

from gpbt.analysis.report import SECTIONS, plot_hyperparameters, write_report
from gpbt.cli import main
from gpbt.config import validate_config
from gpbt.core.space import Space
from gpbt.engines.vector import run_vector
from gpbt.store import ExperimentStore, load

# compiles JAX programs, starts processes or a browser: the slow lane (pytest -m slow)
pytestmark = pytest.mark.slow

TINY = tiny_vector(total_steps=4096 * 4)


def section(dom: str, key: str) -> str:
    start = dom.index(f'<section id="{key}">')
    return dom[start : dom.index("</section>", start)]


@needs_chromium
@pytest.mark.slow
def test_report_is_a_real_page_in_a_browser(tmp_path_factory, tmp_path):
    folder = tmp_path_factory.mktemp("run")
    run_vector(validate_config(copy.deepcopy(TINY)), folder, supervise=False)
    out = write_report(folder)
    exp = load(folder)
    dom, console = load_page(out / "report.html", tmp_path)
    assert console == [], "console messages while loading the report:\n" + "\n".join(console)
    assert 'data-images="ok"' in dom  # the page's own check: every figure decoded
    assert "<h1>Experiment report: gpbt-pl on CartPole-v1</h1>" in dom
    for key, title in SECTIONS:
        assert f'<section id="{key}"><h2>{title}</h2>' in dom, key
    assert "<pre" not in dom
    assert "http://" not in dom and "https://" not in dom  # self-contained, nothing fetched

    # the decision log: one row per exploit, with who copied whom and both scores
    log = section(dom, "decisions")
    exploits = exp.decisions[exp.decisions["kind"] == "exploit"]
    assert len(exploits) > 0
    assert log.count("<tr>") == 1 + len(exploits)
    first = exploits.iloc[0]
    cells = re.findall(r"<td>([^<]*)</td>", log)
    assert cells[:3] == [f"{first['time']:g}", str(first["member"]), str(first["donor"])]
    # the schedule along the lineage: a row per interval
    assert section(dom, "hyperparameters").count("<tr>") == 1 + 4
    assert "<strong>" in section(dom, "summary")  # inline Markdown rendered, not shown raw

    pngs = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', dom)
    gifs = re.findall(r'<img alt="[^"]+" src="data:image/gif;base64,', dom)
    assert len(pngs) == 3 and len(gifs) == 1
    gif = Image.open(out / "episode.gif")
    assert gif.n_frames > 5
    assert re.search(r"playing one greedy episode of CartPole-v1: \d+ steps", dom)
    md = (out / "summary.md").read_text()
    assert "## Decision log" in md and "![member" in md and "episode.gif" in md


def store_with_two_members(folder):
    with ExperimentStore(folder) as s:
        s.write_config(
            {
                "engine": "local",
                "method": "pbt",
                "trainable": "my:Toy",
                "space": {
                    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
                    "gamma": {"type": "float", "low": 0.9, "high": 0.999},
                    "opt": {"type": "choice", "values": ["adam", "sgd"], "ordered": False},
                },
            }
        )
        s.add_reports(
            [
                {
                    "member": m,
                    "time": t,
                    "score": float(m + t),
                    "config": {"lr": 10.0 ** -(m + 2), "gamma": 0.95, "opt": ["adam", "sgd"][m]},
                }
                for t in (1, 2)
                for m in (0, 1)
            ]  # fmt: skip
        )


def test_log_axes_follow_the_stored_space(tmp_path):
    store_with_two_members(tmp_path)
    exp = load(tmp_path)
    axis = plot_hyperparameters(
        exp.reports, Space.from_dict(exp.config["space"]), [], tmp_path / "h.png"
    )
    assert axis == {"lr": "log", "gamma": "linear", "opt": "categories"}


def test_report_of_a_run_without_weights_to_draw_says_why(tmp_path):
    store_with_two_members(tmp_path)
    out = write_report(tmp_path)
    page = (out / "report.html").read_text()
    assert "No animation: the &#x27;local&#x27; engine trains your own trainables" in page
    assert "<pre" not in page and page.count("<table>") == 3  # no decisions: no log table
    assert "0 decisions. Every exploit" in page
    assert not (out / "episode.gif").exists()


def test_report_errors_are_one_line(tmp_path, capsys):
    with ExperimentStore(tmp_path) as s:
        s.write_config(validate_config(copy.deepcopy(TINY)))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"gpbt: error: {tmp_path} has no reports yet")
    store_with_two_members(tmp_path / "two")
    assert main(["report", str(tmp_path / "two"), "--metric", "reward"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "gpbt: error: metric 'reward' is not in this experiment's reports; available: "
        "['score'] (use --metric NAME)"
    ]


def test_an_exploit_whose_perturbation_changed_nothing_says_unchanged(tmp_path):
    store_with_two_members(tmp_path)
    with ExperimentStore(tmp_path) as s:
        s.add_decisions(
            [{"time": 1, "member": 0, "kind": "exploit", "donor": 1, "partner": 1,
              "member_score": 1.0, "partner_score": 2.0,
              "old_config": {"lr": 0.001503, "gamma": 0.95, "opt": "adam"},
              "new_config": {"lr": 0.001503, "gamma": 0.97, "opt": "adam"}}]
        )  # fmt: skip
    summary = (write_report(tmp_path, animate=False) / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| 1 | 0 | 1 |"))
    assert "| 0.001503 (unchanged) |" in row and "| 0.95 -> 0.97 |" in row
    assert "| adam (unchanged) |" in row
