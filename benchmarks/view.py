"""The HTML page's costs: writing resnet152's page, whole process, against a bare
`python -c "import torch"` (goal: at most 0.25x; `--check` and `--emit torch` beside it), the
pages' sizes, and in headless Chromium (Debian's chromium + chromium-driver, driven by selenium)
the time to first paint and to unfold a stage, for resnet152 and for a 1,000-block network
(resnet50's form, 4 stages of 250 bottlenecks at 32x32). With --screenshots DIR it also writes
the README's pictures of resnet50 and of skresnet18's layer2.0.

    python benchmarks/view.py [--rounds 5] [--out benchmarks/results/view.txt] [--screenshots docs/img]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
GOAL = 0.25
BIG = """name: resnet_1000_blocks
input: {channels: 3, height: 32, width: 32}
num_classes: 10
stem:
  - {op: conv, name: conv1, channels: 16, kernel: 7, stride: 2}
  - {op: bn, name: bn1}
  - {op: relu, name: relu}
  - {op: maxpool, name: maxpool, kernel: 3, stride: 2, padding: 1}
stages:
  - {block: bottleneck, depth: 250, channels: 16}
  - {block: bottleneck, depth: 250, channels: 32, stride: 2}
  - {block: bottleneck, depth: 250, channels: 64, stride: 2}
  - {block: bottleneck, depth: 250, channels: 128, stride: 2}
head: {pool: avg}
"""

# in the page: ms from a click on a group's toggle to the frame after its children show
TIMED_CLICK = """
const [sel, done] = arguments;
const g = document.querySelector(sel);
const t = [...g.querySelectorAll('[data-role=toggle]')].find(t => t.closest('[data-kind]') === g);
const t0 = performance.now();
t.click();
requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t0)));
"""
# ms from navigation start to the first contentful paint (which may come after the load event:
# wait for it) and to the end of the load event
PAINT = """
const done = arguments[0];
const nav = performance.getEntriesByType('navigation')[0];
new PerformanceObserver((list, obs) => {
  const p = list.getEntriesByName('first-contentful-paint')[0];
  if (p) { obs.disconnect(); done([p.startTime, nav.loadEventEnd]); }
}).observe({type: 'paint', buffered: true});
"""


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def whole_process(tmp: Path, rounds: int) -> tuple[list[str], float]:
    cli = [sys.executable, "-m", "resnet_compiler", "spec/resnet152.yaml"]
    commands = {
        "resnet-compile spec/resnet152.yaml --emit html -o m.html":
            [*cli, "--emit", "html", "-o", str(tmp / "m.html")],
        "resnet-compile spec/resnet152.yaml --emit torch -o m.py":
            [*cli, "--emit", "torch", "-o", str(tmp / "m.py")],
        "resnet-compile spec/resnet152.yaml --check": [*cli, "--check"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }
    for cmd in commands.values():  # warm the file cache and the bytecode
        _time(cmd)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, cmd in commands.items():
            times[name].append(_time(cmd))
    base = statistics.median(times['python -c "import torch"'])
    lines = [f"{'command':58s} {'median':>8s} {'vs import torch':>16s}"]
    for name, values in times.items():
        m = statistics.median(values)
        lines.append(f"{name:58s} {m:7.3f}s {m / base:16.3f}")
    return lines, statistics.median(times[next(iter(commands))]) / base


def in_browser(pages: dict[str, tuple[Path, str]], tmp: Path, loads: int) -> list[str]:
    import browser
    drv = browser.open_driver(tmp / "chrome")
    drv.set_script_timeout(60)
    lines = [f"{'page':22s} {'bytes':>11s} {'first paint':>12s} {'load':>8s} {'unfold':>22s}"]
    try:
        for name, (path, stage) in pages.items():
            paints, ends, unfolds = [], [], []
            for _ in range(loads):
                browser.load(drv, path)
                paint, end = drv.execute_async_script(PAINT)
                paints.append(paint)
                ends.append(end)
                unfolds.append(drv.execute_async_script(
                    TIMED_CLICK, f"[data-kind=stage][data-path='{stage}']"))
            errors, urls = browser.logs(drv)
            assert not errors and not browser.off_page(urls), (errors, urls)
            unfold = f"{stage} {statistics.median(unfolds):.0f}ms"
            lines.append(f"{name:22s} {path.stat().st_size:11,d} {statistics.median(paints):10.0f}ms"
                         f" {statistics.median(ends):6.0f}ms {unfold:>22s}")
            if name.startswith("1,000"):  # the x249 run opened into its blocks
                run = drv.execute_async_script(TIMED_CLICK,
                                               "[data-kind=block][data-path='layer2.1']")
                n = browser.js(drv, "return document.querySelectorAll("
                                    "'[data-kind=block][data-path^=\"layer2.\"]').length;")
                lines.append(f"{'':22s} unfolding the x249 run of layer2 into its {n - 1} blocks:"
                             f" {run:.0f}ms")
    finally:
        drv.quit()
    return lines


def screenshots(out: Path, tmp: Path) -> list[str]:
    import browser
    drv = browser.open_driver(tmp / "chrome-shots")
    written = []
    try:
        # resnet50 folded: stages, layer3 open on its strided block and a x5 run (selected);
        # skresnet18's layer2.0 open on its ops, the dilated path's conv selected
        for spec, name, opened, click, top in (
                ("spec/resnet50.yaml", "view_resnet50.png", [("stage", "layer3")],
                 "[data-kind=block][data-path='layer3.1'] > .head .title", "layer1"),
                ("spec/zoo/skresnet18.yaml", "view_skresnet18_layer2.0.png",
                 [("stage", "layer2"), ("block", "layer2.0")],
                 "[data-kind=op][data-path='layer2.0.conv1.paths.1.conv']", "layer2")):
            page = tmp / (Path(spec).stem + ".html")
            subprocess.run([sys.executable, "-m", "resnet_compiler", spec, "--emit", "html", "-o",
                            str(page)], check=True, capture_output=True, cwd=ROOT)
            browser.load(drv, page)
            for kind, path in opened:
                browser.toggle(drv, kind, path)
            browser.js(drv, "document.querySelector(arguments[0]).click();", click)
            browser.js(drv, "window.scrollTo(0, document.querySelector(`[data-kind=stage]"
                            "[data-path='${arguments[0]}']`).getBoundingClientRect().top"
                            " + window.scrollY - 190);", top)
            time.sleep(0.3)
            drv.save_screenshot(str(out / name))
            written.append(str((out / name).relative_to(ROOT)))
    finally:
        drv.quit()
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved whole-process rounds")
    p.add_argument("--loads", type=int, default=3, help="page loads per page in the browser")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "view.txt"))
    p.add_argument("--screenshots", help="also write the README's screenshots to this folder")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        lines = [f"{platform.machine()}, Python {platform.python_version()}, median of "
                 f"{args.rounds} interleaved rounds"]
        timing, ratio = whole_process(tmp, args.rounds)
        lines += timing
        lines.append(f"--emit html / import torch = {ratio:.3f} (goal <= {GOAL}: "
                     f"{'met' if ratio <= GOAL else 'NOT met'})")
        (tmp / "big.yaml").write_text(BIG)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "resnet_compiler", str(tmp / "big.yaml"), "--emit",
                        "html", "-o", str(tmp / "big.html")], check=True, capture_output=True)
        lines.append(f"1,000-block page written in {time.perf_counter() - t:.2f}s (whole process)")
        subprocess.run([sys.executable, "-m", "resnet_compiler", "spec/resnet152.yaml", "--emit",
                        "html", "-o", str(tmp / "r152.html")], check=True, capture_output=True,
                       cwd=ROOT)
        lines.append(f"headless Chromium, median of {args.loads} loads from file://:")
        lines += in_browser({"resnet152": (tmp / "r152.html", "layer3"),
                             "1,000-block network": (tmp / "big.html", "layer2")}, tmp, args.loads)
        if args.screenshots:
            lines.append("screenshots: " + ", ".join(screenshots(Path(args.screenshots).resolve(),
                                                                 tmp)))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
