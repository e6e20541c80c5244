"""Workbench speed in a real headless browser (Debian's chromium driven by playwright).

Measures, on a run with 60+ analysed checkpoints:
1. open -> Training curves drawn: from loading the page (the app opens on the training curves
   of the run that changed last) to every chart of the view drawn, on a freshly started
   server (cold caches; the median over ``--colds`` fresh servers, 3 by default, since one
   such open varies by +-0.2 s here) and again on a reload (warm); target < 3 s. The servers
   start as ``interp app`` starts them (apps/launch.py). Also the switch from the
   Runs view to Training curves by a click;
2. atlas redraw: from a slider move (one key press) to the head atlas showing the new step
   with its grid redrawn, median over ``--moves`` moves; target < 0.5 s.
As a reference in the same run it times a bare Streamlit page that draws one Altair chart,
and prints each figure as a ratio to it (what the workbench adds to Streamlit's own cost).

    python benchmarks/bench_app.py [RUN] [--moves 10] [--colds 3]
    python benchmarks/bench_app.py --scale 20x200 [--root DIR]

RUN defaults to checkpoints/default (``interp quickstart`` makes it, 76 checkpoints).
``--scale RxC`` measures the same on a root of R runs of about C analysed checkpoints each
(issue 11's scale case: 20 x 200), built under ``--root`` on the first call (a few minutes:
one ``markov`` run with a denser checkpoint schedule, trained and analysed, then copied R - 1
times with its checkpoint files hard-linked, so the copies take no disk) and reused after.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))

from serve import APP, CHROMIUM_ARGS, chromium_path, start_app  # noqa: E402

VIEWPORT = {"width": 1400, "height": 1000}

REFERENCE_APP = '''
import altair as alt, numpy as np, pandas as pd, streamlit as st
st.header("Reference")
df = pd.DataFrame({"x": np.arange(200), "y": np.random.default_rng(0).normal(size=200).cumsum()})
st.altair_chart(alt.Chart(df).mark_line().encode(x="x", y="y"), width="stretch")
'''

# Every vega chart on the page has drawn its marks: SVG paths, or a canvas with at least 0.5% of
# its pixels painted (vega creates the canvas, sized, before it paints anything into it).
CHARTS_DRAWN = """(n) => {
    const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
    if (charts.length < n) return false;
    const running = document.querySelector('[data-testid="stStatusWidget"]');
    if (running && running.innerText.includes('Running')) return false;
    const painted = (chart) => {
        const canvas = chart.querySelector('canvas.marks');
        if (!canvas || !canvas.width || !canvas.height) return false;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let count = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0 && ++count > data.length / 800) return true;
        return false; };
    return charts.every(c => c.querySelector('svg.marks path') || painted(c)); }"""


def open_and_draw(page, url: str, view: str | None, charts: int) -> float:
    """Seconds from navigation to ``charts`` drawn charts in ``view`` (None: the first page)."""
    start = time.perf_counter()
    page.goto(url)
    if view:
        label = page.locator("section[data-testid='stSidebar'] label").filter(has_text=view).first
        label.click()
    page.wait_for_function(CHARTS_DRAWN, arg=charts, polling=10)
    return time.perf_counter() - start


def atlas_moves(page, moves: int) -> list[float]:
    """Seconds from one ArrowLeft on the atlas slider to the new step's caption and grid."""
    page.locator("section[data-testid='stSidebar'] label").filter(has_text="Head atlas").first.click()
    caption = page.get_by_text("induction heads found").first
    caption.wait_for()
    page.wait_for_function(CHARTS_DRAWN, arg=2, polling=10)
    slider = page.get_by_role("slider").first
    times = []
    for _ in range(moves):
        before = caption.inner_text()
        cells = page.locator('[data-testid="stVegaLiteChart"]').first.inner_html()
        start = time.perf_counter()
        slider.focus()
        slider.press("ArrowLeft")
        page.wait_for_function(
            """([before, cells]) => {
                const cap = [...document.querySelectorAll('p')].find(p => p.innerText.includes('induction heads found'));
                const grid = document.querySelector('[data-testid="stVegaLiteChart"]');
                return cap && cap.innerText !== before && grid && grid.innerHTML !== cells
                       && grid.querySelector('svg.marks path, canvas.marks'); }""",
            arg=[before, cells], polling=5)
        times.append(time.perf_counter() - start)
    return times


def scale_root(root: Path, runs: int, checkpoints: int) -> Path:
    """``root`` holding ``runs`` analysed runs of at least ``checkpoints`` checkpoints (built
    once; see the module docstring). The app is opened on ``root``."""
    import os
    import shutil
    from dataclasses import replace

    from interp.analysis import AnalysisConfig, analyze_run
    from interp.checkpoints import checkpoint_schedule
    from interp.config import preset
    from interp.train import train

    first = root / "run-01"
    if not (first / "metrics.h5").exists():
        config = preset("markov")
        schedule = replace(config.train, log_checkpoints=60)
        while len(checkpoint_schedule(schedule)) < checkpoints:
            schedule = replace(schedule, linear_checkpoints=schedule.linear_checkpoints + 1)
        config = replace(config, train=schedule)
        shutil.rmtree(first, ignore_errors=True)
        print(f"building {first} ({len(checkpoint_schedule(config.train))} checkpoints) ...", flush=True)
        train(config, first, progress=False)
        analyze_run(first, AnalysisConfig(), progress=False)
    for k in range(2, runs + 1):
        copy = root / f"run-{k:02d}"
        if (copy / "metrics.h5").exists():
            continue
        shutil.rmtree(copy, ignore_errors=True)
        # Checkpoints and data/ are hard links (read-only here); metrics and run files are
        # real copies, so each run has its own metrics file and mtime as a real one would.
        shutil.copytree(first, copy, copy_function=os.link,
                        ignore=shutil.ignore_patterns("metrics.h5", "metrics.journal", "*.json", "figures"))
        for name in ("metrics.h5", "config.json", "run.json"):
            shutil.copy2(first / name, copy / name)
        if (first / "metrics.journal").exists():
            shutil.copytree(first / "metrics.journal", copy / "metrics.journal", dirs_exist_ok=True)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, default=Path("checkpoints/default"))
    parser.add_argument("--moves", type=int, default=10)
    parser.add_argument("--colds", type=int, default=3, help="fresh servers whose first open is timed (median)")
    parser.add_argument("--scale", help="RxC: a root of R runs of C checkpoints instead of RUN (e.g. 20x200)")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "interp-app-scale",
                        help="where --scale builds (and later finds) its runs")
    args = parser.parse_args()
    if args.scale:
        try:
            runs, checkpoints = (int(part) for part in args.scale.lower().split("x"))
        except ValueError:
            print(f"bench_app: --scale must look like 20x200, not {args.scale!r}", file=sys.stderr)
            return 2
        args.run = scale_root(args.root, runs, checkpoints)
    browser_binary = chromium_path()
    if not browser_binary:
        print("bench_app: needs chromium (apt-get install chromium) or INTERP_CHROMIUM", file=sys.stderr)
        return 2
    if not args.scale and not (args.run / "metrics.h5").exists():
        print(f"bench_app: {args.run} is not an analysed run; make one with 'interp quickstart'", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    from interp.analysis import analyzed_steps

    if args.scale:
        found = sorted(p.parent for p in args.run.glob("*/config.json"))
        print(f"root {args.run}: {len(found)} runs of {len(analyzed_steps(found[0]))} analysed checkpoints")
    else:
        print(f"run {args.run}: {len(analyzed_steps(args.run))} analysed checkpoints")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        reference_script = Path(tmp) / "reference.py"
        reference_script.write_text(REFERENCE_APP)
        browser = pw.chromium.launch(executable_path=browser_binary, args=CHROMIUM_ARGS)
        figures, colds = {}, {"reference": [], "curves": []}
        for _ in range(args.colds - 1):  # earlier fresh servers: their cold opens only
            for name, script, charts in (("reference", reference_script, 1), ("curves", APP, 4)):
                proc, url = start_app(args.run, script=script)
                page = browser.new_page(viewport=VIEWPORT)
                try:
                    colds[name].append(open_and_draw(page, url, None, charts))
                finally:
                    page.close()
                    proc.terminate()
        proc, url = start_app(args.run, script=reference_script)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            colds["reference"].append(open_and_draw(page, url, None, 1))
            figures["reference warm"] = open_and_draw(page, url, None, 1)
        finally:
            page.close()
            proc.terminate()
        proc, url = start_app(args.run)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            colds["curves"].append(open_and_draw(page, url, None, 4))
            figures["curves warm"] = open_and_draw(page, url, None, 4)
            open_and_draw(page, url + "/?view=Runs", None, 0)
            page.locator("[data-testid='stDataFrame']").first.wait_for()
            start = time.perf_counter()
            page.locator("section[data-testid='stSidebar'] label").filter(has_text="Training curves").first.click()
            page.wait_for_function(CHARTS_DRAWN, arg=4, polling=10)
            figures["runs -> curves"] = time.perf_counter() - start
            moves = atlas_moves(page, args.moves)
        finally:
            proc.terminate()
        browser.close()
    for name, times in colds.items():
        figures[f"{name} cold"] = statistics.median(times)
    for kind in ("cold", "warm"):
        ratio = figures[f"curves {kind}"] / figures[f"reference {kind}"]
        each = (f" (median of {args.colds} fresh servers: {', '.join(f'{t:.2f}' for t in colds['curves'])}; "
                f"reference {', '.join(f'{t:.2f}' for t in colds['reference'])})") if kind == "cold" else ""
        print(f"open -> Training curves drawn ({kind}): {figures[f'curves {kind}']:.2f} s "
              f"(target < 3 s); reference page {figures[f'reference {kind}']:.2f} s; ratio {ratio:.2f}{each}")
    print(f"Runs -> Training curves by a click: {figures['runs -> curves']:.2f} s")
    print(f"atlas redraw after a slider move: median {statistics.median(moves):.3f} s, "
          f"max {max(moves):.3f} s over {len(moves)} moves (target < 0.5 s); "
          f"ratio to the warm reference page {statistics.median(moves) / figures['reference warm']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
