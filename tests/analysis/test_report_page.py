"""report.html as a reader sees it: rendered by headless chromium (Playwright), every image loaded, the headline
table first. Uses Debian chromium like envs (AGENTSWEEP_CHROMIUM overrides); skipped where there is none."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from analysis.report import ReportOptions, build_report
from analysis.simulate import simulate_study

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("AGENTSWEEP_CHROMIUM", "/usr/lib/chromium/chromium")


def _render(report_dir: Path, queries: dict[str, Callable]) -> dict:
    """Open report_dir/report.html in headless chromium (1280x900), save a full-page screenshot beside it, and
    return every image's (alt, loaded, natural width) under "images" plus each query's result (a function of
    the Playwright page) under its name."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((report_dir / "report.html").as_uri())
            out = {
                "images": page.eval_on_selector_all(
                    "img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])"
                )
            }
            out |= {name: query(page) for name, query in queries.items()}
            page.screenshot(path=str(report_dir / "report.png"), full_page=True)
        finally:
            browser.close()
    return out


def test_report_page_renders_with_every_image_and_the_headline_first(tmp_path):
    runs, curves, _ = simulate_study(240, seed=2)
    build_report(
        runs,
        tmp_path / "r",
        ReportOptions(stratum="params.sft_checkpoint", win_ci_reps=10),
        curves_source=curves,
    )
    seen = _render(
        tmp_path / "r",
        {
            "num_headlines": lambda page: page.locator("table[id^=headline-]").count(),
            "first_heading": lambda page: page.locator("h2").first.inner_text(),
            "header": lambda page: page.locator("table[id^=headline-]").first.locator("th").all_inner_texts(),
        },
    )
    images = seen["images"]
    assert {alt for alt, _, _ in images} >= {"effects", "winrates", "tuning_curves", "frontier"}
    assert all(done and width > 300 for _, done, width in images), images  # loaded and large enough to read
    assert seen["num_headlines"] == 3 and seen["first_heading"] == "What to pick"
    assert seen["header"][:3] == ["hparam", "importance [95% CI]", "recommended"]
    assert (tmp_path / "r" / "report.png").stat().st_size > 50_000


def test_report_page_with_arms_opens_with_the_compute_to_match_headline(tmp_path):
    from analysis.choices import ArmOptions

    runs, curves, _ = simulate_study(240, seed=2)
    arms = ArmOptions("params.sft_checkpoint", baseline="0", k=20, reps=100)
    options = ReportOptions(stratum="params.sft_checkpoint", win_ci_reps=0, arms=arms)
    build_report(runs, tmp_path / "r", options, curves_source=curves)
    seen = _render(
        tmp_path / "r",
        {
            "first_heading": lambda page: page.locator("h2").first.inner_text(),
            "ratios": lambda page: page.locator("#headline-arms li").all_inner_texts(),
            "compute_images": lambda page: page.eval_on_selector_all(
                "h2:text('Compute') ~ img", "els => els.map(e => e.alt)"
            ),
        },
    )
    images, ratios = seen["images"], seen["ratios"]
    assert seen["first_heading"] == "Headline: arms at equal k = 20"
    assert len(ratios) == 2 and all("reaches 0's peak" in r for r in ratios), ratios
    assert seen["compute_images"][:2] == [
        "frontier_k",
        "frontier",
    ]  # the equal-k figure opens the compute section
    assert all(done and width > 600 for alt, done, width in images if alt.startswith("frontier")), images
