"""The leaderboard page in a real browser (headless Chromium through Playwright): every table
sorts, the filters hide rows, toggling an agent removes its curve, compare shows what
``metarl-bench compare`` prints, every image and link resolves, no console errors, and the
page fits a 1,280 px window and a 390 px phone. Screenshots of both widths are saved under
pytest's temporary folder (and into ``$METARL_BENCH_SCREENSHOTS`` when that is set).

Skipped, saying why, where Chromium or the ``playwright`` package is missing: ``make test``
installs both (Chromium from Debian, where apt-get can run).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from metarl_bench import benchmarks as bm
from metarl_bench import leaderboard as lb
from metarl_bench.benchmarks import Benchmark, Protocol
from metarl_bench.recording import build_record

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
BENCH_A, BENCH_B = "MetaRL/PageFake-v0", "MetaRL/PageFakeB-v0"
REFS = {"random": {"online": 1.0, "final": 0.25}, "oracle": {"online": 3.0, "final": 0.75}}

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (`apt-get install chromium`, or "
                       "`make test` where apt-get can run): the browser test of the leaderboard page cannot run"),
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed (`pip install "
                       "-c constraints.txt playwright`, in the dev extra): the browser test of the page cannot run"),
]


def _bench(bid: str, seed: int) -> Benchmark:
    return Benchmark(
        id=bid, family_id="MetaRL/Bandit-v0", family_kwargs={"k": 2},
        protocol=Protocol(budget_episodes=4, runs_per_task=2, final_episodes=2), n_train=4, n_test=6,
        task_seed=seed, meta_train_steps=10, headline="online", tier="smoke", reference_overrides=REFS,
    )


def _record(bid: str, agent: str, seed: int, p: float, variant: str | None = None):
    rng = np.random.default_rng(1000 * seed + int(100 * p) + len(agent))
    learn = np.linspace(0.0, 0.3, 6)[None, None, :]  # better with experience
    returns = (rng.random((6, 2, 6)) < np.clip(p + learn, 0, 1)).astype(float)
    ag = SimpleNamespace(name=agent, resolved_config=lambda: {"p": p} if variant else {})
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 4.0])
    rec = build_record(ag, bm.benchmark(bid), seed, returns, x, ["budget"] * 4 + ["final"] * 2,
                       {"env_steps": 100 * seed, "wall_seconds": 1.5 * seed}, {})
    if variant:
        rec.agent["variant"] = variant
    return rec


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny results folder with its published leaderboard: two benchmarks, agents of four
    paradigms and a plugin-like unregistered one, a variant, and a row with one seed."""
    bm.benchmark_ids()  # loads the definitions: else the snapshot is empty and the restore would leave none
    # test-only: benchmarks.py has no public way to register a throwaway definition and remove it
    before = dict(bm._BENCHMARKS)
    bm._BENCHMARKS[BENCH_A] = _bench(BENCH_A, 5)
    bm._BENCHMARKS[BENCH_B] = _bench(BENCH_B, 6)
    root = tmp_path_factory.mktemp("page") / "results"
    try:
        for s in (0, 1, 2):
            for agent, p in (("random", 0.3), ("ucb1", 0.5), ("maml-trpo", 0.4), ("rl2", 0.45), ("my-agent", 0.35)):
                _record(BENCH_A, agent, s, p).save(root)
            _record(BENCH_A, "ucb1", s, 0.55, variant="ucb1@c=0.5").save(root)
            _record(BENCH_B, "random", s, 0.3).save(root)
        _record(BENCH_B, "ucb1", 0, 0.5).save(root)  # one seed only
        lb.write_leaderboard(root, reps=200, progress=False)
        yield root
    finally:
        bm._BENCHMARKS.clear()
        bm._BENCHMARKS.update(before)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Opened(SimpleNamespace):
    page: Page
    problems: list[str]


def _open(browser: Browser, path: Path, width: int = 1280) -> Opened:
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("html[data-ready='1']", state="attached", timeout=15000)
    return Opened(page=page, problems=problems)


@pytest.fixture
def opened(browser: Browser, board: Path) -> Iterator[Opened]:
    o = _open(browser, board / "index.html")
    yield o
    o.page.close()


def _column(page: Page, table_id: str, col: int) -> list[Any]:
    return page.evaluate(
        """([id, col]) => Array.from(document.getElementById(id).tBodies[0].rows).map(r => {
             const td = r.children[col]; const v = td.getAttribute('data-v');
             return v === null ? td.textContent.trim() : v; })""",
        [table_id, col],
    )


def _sorted_as_shown(values: list[str], numeric: bool, direction: str) -> bool:
    present = [v for v in values if v != ""]
    if values[:len(present)] != present:  # empty cells come last
        return False
    keys: list[Any] = [float(v) for v in present] if numeric else [v.lower() for v in present]
    return keys == sorted(keys, reverse=direction == "descending")


def test_every_table_sorts_on_every_sortable_column(opened: Opened):
    page = opened.page
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    tables = page.evaluate("Array.from(document.querySelectorAll('table.sortable')).map(t => t.id)")
    assert len(tables) == 1 + 2 * 2  # the RL summary, a table and a provenance table per benchmark
    assert "summary-rl" in tables and "t-metarl-pagefake-v0" in tables
    checked = 0
    for tid in tables:
        heads = page.locator(f"#{tid} thead th")
        for col in range(heads.count()):
            th = heads.nth(col)
            kind = th.get_attribute("data-sort")
            if kind is None:
                continue
            for _ in range(2):  # both directions
                th.click()
                direction = th.get_attribute("aria-sort")
                assert direction in ("ascending", "descending")
                values = _column(page, tid, col)
                assert _sorted_as_shown(values, kind == "num", direction), (tid, col, direction, values)
            checked += 1
    assert checked >= 20
    # a click changes the order: the rank column's first descending click puts the last-ranked first
    tid = "t-metarl-pagefake-v0"
    ranks = _column(page, tid, 0)
    page.locator(f"#{tid} thead th").nth(0).click()
    assert _column(page, tid, 0) != ranks
    assert opened.problems == []


def test_filters_hide_rows_by_name_and_paradigm(opened: Opened):
    page = opened.page
    tid = "t-metarl-pagefake-v0"
    box = page.locator(f".filters[data-for='{tid}']")

    def visible() -> list[str]:
        return page.evaluate(f"""Array.from(document.getElementById('{tid}').tBodies[0].rows)
                                 .filter(r => r.offsetParent !== null).map(r => r.dataset.name)""")

    everyone = visible()
    assert len(everyone) == 6 and box.locator(".count").inner_text() == "6 of 6 rows"
    box.locator("input").fill("ucb1")
    assert sorted(visible()) == ["ucb1", "ucb1@c=0.5"] and box.locator(".count").inner_text() == "2 of 6 rows"
    box.locator("input").fill("")
    box.locator("select").select_option("classical")
    assert sorted(visible()) == ["random", "ucb1", "ucb1@c=0.5"]
    box.locator("select").select_option("other")
    assert visible() == ["my-agent"]  # not registered: the fallback group
    box.locator("select").select_option("")
    assert sorted(visible()) == sorted(everyone)
    # the summary's filter too
    summary = page.locator(".filters[data-for='summary-rl']")
    summary.locator("select").select_option("gradient")
    names = page.evaluate("""Array.from(document.getElementById('summary-rl').tBodies[0].rows)
                             .filter(r => r.offsetParent !== null).map(r => r.dataset.name)""")
    assert names == ["maml-trpo"]
    assert opened.problems == []


def test_toggling_an_agent_removes_its_curve(opened: Opened):
    page = opened.page
    chart = "#metarl-pagefake-v0 .chart"
    bar = page.locator("#tg-metarl-pagefake-v0")

    def series() -> list[str]:
        return page.evaluate(f"Array.from(document.querySelectorAll('{chart} g.series')).map(g => g.dataset.variant)")

    assert sorted(series()) == sorted(["maml-trpo", "my-agent", "random", "rl2", "ucb1", "ucb1@c=0.5"])
    assert page.locator(f"{chart} g.reference").count() == 2  # random and oracle reference lines
    button = bar.locator("button[data-variant='ucb1']")
    button.click()
    assert "ucb1" not in series() and "ucb1@c=0.5" in series() and button.get_attribute("aria-pressed") == "false"
    button.click()
    assert "ucb1" in series() and button.get_attribute("aria-pressed") == "true"
    bar.locator("button.all", has_text="none").click()
    assert series() == [] and page.locator(f"{chart} g.reference").count() == 2
    bar.locator("button.all", has_text="all").click()
    assert len(series()) == 6
    # each curve is drawn from the data: one band and one line per agent with more than one point
    assert page.locator(f"{chart} g.series[data-variant='rl2'] path.line").count() == 1
    assert page.locator(f"{chart} g.series[data-variant='rl2'] path.band").count() == 1
    assert opened.problems == []


def test_compare_shows_what_the_cli_compare_prints(opened: Opened, board: Path):
    page = opened.page
    box = page.locator("#metarl-pagefake-v0 .compare")
    options = box.locator("select").first.locator("option").all_inner_texts()
    names = [o.split(". ", 1)[1] for o in options]
    for a, b in ((names[0], names[2]), (names[3], names[1])):  # in table order, and mirrored
        box.locator("select").nth(0).select_option(label=f"{names.index(a) + 1}. {a}")
        box.locator("select").nth(1).select_option(label=f"{names.index(b) + 1}. {b}")
        text = box.locator(".out").inner_text()
        summary, _ = lb.compare(board, a, b, BENCH_A, reps=200)
        diff = lb.fmt_ci(lb.stats.Interval(**summary["iqm_difference"]))
        poi = lb.fmt_ci(lb.stats.Interval(**summary["probability_of_improvement"]))
        assert f"IQM difference ({a} \u2212 {b}): " in text and f"P({a} beats {b} on a task): " in text
        if names.index(a) < names.index(b):
            assert diff in text and poi in text, text
            assert f"metarl-bench compare {a} {b}" in text
        else:  # mirrored from compare b a: the numbers negated / complemented (equal up to resampling)
            assert "Mirrored" in text
            shown = text.split(f"IQM difference ({a} \u2212 {b}): ")[1].split(" [")[0]
            digits = len(shown.split(".")[1]) if "." in shown else 0
            assert float(shown) == pytest.approx(summary["iqm_difference"]["point"], abs=0.5 * 10.0**-digits + 1e-9)
    assert opened.problems == []


def _check_links_and_images(page: Page, page_file: Path) -> int:
    images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert images, "the page shows no image"
    for src, complete, width in images:
        assert complete and width > 0, f"image {src} did not load"
    hrefs = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    ids = set(page.evaluate("Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
    for href in hrefs:
        if href.startswith("#"):
            assert href[1:] in ids, f"link {href} has no target"
            continue
        url = urlparse(href)
        assert not url.scheme and not url.netloc, f"link {href} leaves the page's folder (the page must work offline)"
        assert (page_file.parent / unquote(url.path)).is_file(), f"link {href} does not resolve"
    external = page.evaluate("""Array.from(document.querySelectorAll('[src],link[href]'))
                                .map(e => e.getAttribute('src') || e.getAttribute('href'))
                                .filter(u => /^[a-z]+:/i.test(u))""")
    assert external == [], external
    return len(hrefs)


def test_every_image_and_link_resolves_offline(opened: Opened, board: Path):
    n = _check_links_and_images(opened.page, board / "index.html")
    assert n >= 2 * 3 * 6  # at least each benchmark's record links (table and provenance)
    assert opened.problems == []


def _fits(page: Page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_timeout(300)  # the charts redraw after a resize
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
    if width >= 1280:  # no column hidden behind a scroll bar
        over = page.evaluate("""Array.from(document.querySelectorAll('table'))
            .filter(t => t.scrollWidth > t.parentElement.clientWidth + 1).map(t => t.id)""")
        assert over == [], f"tables wider than the window: {over}"


def _screenshots(page: Page, folder: Path, stem: str) -> list[Path]:
    """At each width: the top of the page, then the first benchmark's table, then its chart and
    compare view, each scrolled to the top of the window."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    views = (("", None), ("-table", "section.bench .filters"), ("-curves", "section.bench .toggles"))
    for width in (1280, 390):
        _fits(page, width)
        for suffix, selector in views:
            if selector is None:
                page.evaluate("window.scrollTo(0, 0)")
            else:
                page.locator(selector).first.evaluate("e => e.scrollIntoView({block: 'start'})")
            path = folder / f"{stem}-{width}{suffix}.png"
            page.screenshot(path=str(path), full_page=False)
            out.append(path)
    return out


def test_fits_1280_and_390_pixels_and_screenshots(opened: Opened, tmp_path: Path):
    page = opened.page
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    shots = _screenshots(page, tmp_path, "tiny-board")
    assert all(p.stat().st_size > 10_000 for p in shots)
    # on a phone the chart is redrawn to the narrower width
    assert page.evaluate("document.querySelector('.chart svg').getAttribute('width')") is not None
    assert int(page.evaluate("document.querySelector('.chart svg').getAttribute('width')")) <= 390
    assert opened.problems == []


def test_the_committed_page(browser: Browser, tmp_path: Path):
    """results/index.html as committed: it loads without errors, its images and links resolve, a
    table sorts, it fits both widths; its screenshots go where $METARL_BENCH_SCREENSHOTS says."""
    path = REPO / "results" / "index.html"
    o = _open(browser, path)
    try:
        page = o.page
        _check_links_and_images(page, path)
        th = page.locator("table.lb").first.locator("thead th").nth(2)
        th.click()
        tid = page.locator("table.lb").first.get_attribute("id")
        assert tid is not None
        assert _sorted_as_shown(_column(page, tid, 2), True, str(th.get_attribute("aria-sort")))
        assert page.locator(".chart g.series").count() >= 10
        folder = Path(os.environ.get("METARL_BENCH_SCREENSHOTS") or tmp_path)
        _screenshots(page, folder, "leaderboard")
        assert o.problems == []
    finally:
        o.page.close()
