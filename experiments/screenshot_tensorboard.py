"""Screenshots of TensorBoard's HParams dashboard, taken with a headless Chromium.

Starts ``tensorboard --logdir <logdir>`` on a free local port, waits until it serves and has loaded the
hparams data, takes the screenshots and stops TensorBoard again (also on errors and Ctrl-C).

Two ways to drive the browser:

* **Playwright** (used when ``import playwright`` works): opens ``#hparams``, chooses the hparam columns
  (``--hparams``) and metric filters (``--metric_min``), screenshots the table view, then optionally clicks
  the "SCATTER PLOT MATRIX VIEW" tab and screenshots that too (``--scatter_out``), with its own columns,
  filters and log-scale axes. It drives the system Chromium, so no browser download is needed:
  ``pip install playwright`` is enough (no ``playwright install``).
* **Plain Chromium** (fallback, or ``--no_playwright``): ``chromium --headless --screenshot``. It cannot
  click, so it gives only the default table view, with the columns TensorBoard ticks by default (the first
  few hparams in alphabetical order); the Playwright-only options are ignored.

Chromium comes from the system (Debian: ``apt-get install --no-install-recommends chromium``) or
``--chromium PATH``; TensorBoard from next to this Python, ``PATH`` or ``--tensorboard PATH``.

In the HParams data of ``lit-mm fit`` runs, ``test/top1`` is declared with a placeholder 0 at the start of
each run, so search-stage runs (not tested) show 0 there; ``--scatter_metric_min test/top1=0.001`` keeps
only the tested (final) runs in the scatter view.

Usage::

    # default table view, plain Chromium is enough
    python experiments/screenshot_tensorboard.py --logdir runs/sweeps/quickstart \\
        --out docs/images/tensorboard_hparams.png

    # with Playwright: chosen columns for the table, and the scatter matrix of tuned_percent (log axis)
    # against val/top1 and test/top1 over the final runs
    python experiments/screenshot_tensorboard.py --logdir runs/sweeps/quickstart \\
        --out docs/images/tensorboard_hparams.png --width 1920 --height 1150 \\
        --hparams tuning num_prompts lr weight_decay tuned_percent --trial_id_width 22em \\
        --scatter_out docs/images/tensorboard_hparams_scatter.png --scatter_width 1600 \\
        --scatter_hparams tuned_percent --scatter_metric_min test/top1=0.001 --log_scale tuned_percent
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Debian's /usr/bin/chromium is a shell wrapper; Playwright wants the real binary.
CHROMIUM_BINARIES = ("/usr/lib/chromium/chromium",)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
]
SCATTER_TAB = 'paper-tab[view-id="scatter-plot-matrix-view"]'


class ScreenshotError(RuntimeError):
    """A step failed; the message says which and what to do."""


def find_chromium(explicit: str | None, real_binary: bool) -> str:
    """The Chromium executable: ``explicit``, else the first one found on the system."""
    if explicit:
        if not Path(explicit).is_file() and not shutil.which(explicit):
            raise ScreenshotError(f"Chromium not found at {explicit}")
        return shutil.which(explicit) or explicit
    candidates = [p for p in CHROMIUM_BINARIES if real_binary and Path(p).is_file()]
    candidates += [found for name in CHROMIUM_NAMES if (found := shutil.which(name))]
    if not candidates:
        raise ScreenshotError(
            "no Chromium found; install it (Debian/Ubuntu: "
            "apt-get install -y --no-install-recommends chromium) or pass --chromium PATH"
        )
    return candidates[0]


def find_tensorboard(explicit: str | None) -> str:
    """The ``tensorboard`` executable: ``explicit``, next to this Python, or on ``PATH``."""
    candidates = [explicit] if explicit else [str(Path(sys.executable).with_name("tensorboard")), "tensorboard"]
    for candidate in candidates:
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    raise ScreenshotError(f"tensorboard not found (tried {candidates}); pass --tensorboard PATH")


def free_port(preferred: int) -> int:
    """``preferred`` when it is free, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as TensorBoard does
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise ScreenshotError("no free port")


class TensorBoard:
    """``tensorboard --logdir ...`` in its own process group; a context manager that always stops it."""

    def __init__(self, exe: str, logdir: str, port: int, log_path: Path) -> None:
        self.cmd = [exe, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)]
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> TensorBoard:
        log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        print(f"started {' '.join(self.cmd)} (pid {self.proc.pid}, log {self.log_path})", flush=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # also ends its tensorboard_data_server child
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        print("stopped tensorboard", flush=True)

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return response.read()

    def wait_ready(self, timeout: float) -> None:
        """Waits until the server answers and the hparams plugin reports data."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_path.read_text()[-2000:]
                raise ScreenshotError(f"tensorboard exited with code {self.proc.returncode}:\n{tail}")
            try:
                plugins = json.loads(self._get("/data/plugins_listing"))
                if plugins.get("hparams", {}).get("enabled"):
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ScreenshotError(
                    f"tensorboard did not serve hparams data within {timeout:.0f} s "
                    f"(is there an hparams summary under the logdir? see {self.log_path})"
                )
            time.sleep(0.5)


def screenshot_cli(chromium: str, url: str, out: Path, width: int, height: int, settle: float, timeout: float) -> None:
    """One screenshot with ``chromium --headless --screenshot`` (the default table view)."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={int(settle * 1000)}",
            f"--screenshot={out.resolve()}",
            url,
        ]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"chromium did not finish within {timeout:.0f} s") from None
    if result.returncode != 0 or not out.is_file():
        raise ScreenshotError(f"chromium failed (exit {result.returncode}):\n{result.stderr[-2000:]}")


def _exact(name: str):
    import re

    return re.compile(rf"^\s*{re.escape(name)}\s*$")


def _show_hparams(page, names: list[str]) -> None:
    """Ticks exactly the hparam columns ``names`` (in the left pane) and unticks every other one."""
    boxes = page.locator("paper-checkbox.hparam-checkbox")
    available = [text.strip() for text in boxes.all_inner_texts()]
    missing = [name for name in names if name not in available]
    if missing:
        print(f"warning: no hparams {missing}; available: {available}", file=sys.stderr)
    for index, name in enumerate(available):
        box = boxes.nth(index)
        if (box.get_attribute("aria-checked") == "true") != (name in names):
            box.click()


def _set_metric_min(page, metric_min: dict[str, str]) -> None:
    for metric, value in metric_min.items():
        row = page.locator("div.metric").filter(has=page.locator("paper-checkbox", has_text=_exact(metric)))
        if row.count() == 0:
            print(f"warning: no metric {metric!r} to filter", file=sys.stderr)
            continue
        row.first.locator('paper-input[label="Min"] input').fill(value)


def _settle(page, settle: float) -> None:
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(settle * 1000)


def screenshot_playwright(
    chromium: str,
    url: str,
    out: Path,
    scatter_out: Path | None,
    width: int,
    height: int,
    settle: float,
    timeout: float,
    hparams: list[str] | None,
    metric_min: dict[str, str],
    trial_id_width: str | None,
    scatter_hparams: list[str] | None,
    scatter_metric_min: dict[str, str],
    log_scale: list[str],
    scatter_width: int | None = None,
) -> None:
    """Table view and, optionally, the scatter plot matrix view, after setting columns, filters and scales."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS[1:])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout * 1000)
            page.goto(url, wait_until="networkidle")
            page.wait_for_selector(SCATTER_TAB)  # the plugin has rendered
            page.wait_for_selector("paper-checkbox.hparam-checkbox")  # the hparams have loaded
            if hparams is not None:
                _show_hparams(page, hparams)
            _set_metric_min(page, metric_min)
            _settle(page, settle)
            if trial_id_width:  # the first grid column holds the run names, 10em wide by default
                page.locator("vaadin-grid-column").first.evaluate(f"(column) => column.width = {trial_id_width!r}")
                page.wait_for_timeout(500)
            # ticking boxes scrolls the left pane; show its top again
            page.locator("div.section-title", has_text="Hyperparameters").scroll_into_view_if_needed()
            page.screenshot(path=str(out))
            print(f"wrote {out} (table view)", flush=True)
            if scatter_out is None:
                return
            if scatter_hparams is not None:
                _show_hparams(page, scatter_hparams)
            _set_metric_min(page, scatter_metric_min)
            if scatter_width and scatter_width != width:
                width = scatter_width
                page.set_viewport_size({"width": width, "height": height})
            page.click(SCATTER_TAB)
            page.wait_for_selector("tf-hparams-scatter-plot-matrix-plot svg")
            for name in log_scale:
                column = page.locator("tf-hparams-scatter-plot-matrix-view div.column").filter(
                    has=page.locator("div.column-title", has_text=_exact(name))
                )
                button = column.locator('paper-radio-button[name="LOG"]')
                if button.count() == 0 or button.first.get_attribute("aria-disabled") == "true":
                    print(f"warning: no log scale for {name!r}", file=sys.stderr)
                else:
                    button.first.click()
            _settle(page, settle)
            page.locator("div.section-title", has_text="Hyperparameters").scroll_into_view_if_needed()
            # cut the empty "no session group selected" area below the plots
            plot = page.locator("tf-hparams-scatter-plot-matrix-plot").first.bounding_box()
            bottom = min(height, int(plot["y"] + plot["height"]) + 16) if plot else height
            page.screenshot(path=str(scatter_out), clip={"x": 0, "y": 0, "width": width, "height": bottom})
            print(f"wrote {scatter_out} (scatter plot matrix view)", flush=True)
        finally:
            browser.close()


def shrink(path: Path, max_width: int | None) -> None:
    """Optionally scales the PNG down to ``max_width`` and re-saves it optimised (needs Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        image.load()
    if max_width and image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    image.save(path, optimize=True)
    print(f"{path}: {image.width}x{image.height}, {path.stat().st_size / 1024:.0f} kB", flush=True)


def parse_metric_min(items: list[str]) -> dict[str, str]:
    result = {}
    for item in items:
        metric, sep, value = item.rpartition("=")
        if not sep or not metric:
            raise ScreenshotError(f"--metric_min wants METRIC=VALUE, got {item!r}")
        result[metric] = value
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", required=True, help="TensorBoard logdir (e.g. a sweep folder)")
    parser.add_argument("--out", required=True, type=Path, help="PNG of the HParams table view")
    parser.add_argument("--port", type=int, default=6006, help="preferred port (a free one is used if taken)")
    parser.add_argument("--tensorboard", help="tensorboard executable (default: next to this Python, or PATH)")
    parser.add_argument("--chromium", help="Chromium executable (default: the system one)")
    parser.add_argument("--width", type=int, default=1600, help="browser window width")
    parser.add_argument("--height", type=int, default=1000, help="browser window height")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to let the page render before a shot")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds allowed for each step")
    parser.add_argument("--max_width", type=int, help="scale the PNGs down to this width")
    parser.add_argument("--no_playwright", action="store_true", help="use plain chromium even if Playwright works")
    pw = parser.add_argument_group("Playwright only")
    pw.add_argument("--hparams", nargs="*", help="hparam columns of the table (default: TensorBoard's choice)")
    pw.add_argument("--metric_min", nargs="*", default=[], help="METRIC=VALUE minimum filters of both views")
    pw.add_argument("--trial_id_width", help="width of the run-name column of the table, e.g. 22em")
    pw.add_argument("--scatter_out", type=Path, help="PNG of the scatter plot matrix view")
    pw.add_argument("--scatter_hparams", nargs="*", help="hparam columns of the scatter view (default: --hparams)")
    pw.add_argument(
        "--scatter_metric_min",
        nargs="*",
        default=[],
        help="extra METRIC=VALUE filters of the scatter view, e.g. test/top1=0.001 to drop runs without a test",
    )
    pw.add_argument("--scatter_width", type=int, help="window width for the scatter view (default: --width)")
    pw.add_argument("--log_scale", nargs="*", default=[], help="columns on a log scale in the scatter view")
    args = parser.parse_args(argv)

    try:
        if not Path(args.logdir).is_dir():
            raise ScreenshotError(f"logdir {args.logdir} does not exist")
        metric_min = parse_metric_min(args.metric_min)
        scatter_metric_min = parse_metric_min(args.scatter_metric_min)
        try:
            import playwright  # noqa: F401

            use_playwright = not args.no_playwright
        except ImportError:
            use_playwright = False
        chromium = find_chromium(args.chromium, real_binary=use_playwright)
        if not use_playwright and (args.scatter_out or args.hparams is not None or metric_min):
            print(
                "note: without Playwright only the default table view is taken; the Playwright-only options "
                "are ignored (pip install playwright)",
                file=sys.stderr,
            )
        tensorboard = find_tensorboard(args.tensorboard)
        for path in (args.out, args.scatter_out):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tb-shot-") as tmp:
            with TensorBoard(tensorboard, args.logdir, free_port(args.port), Path(tmp) / "tensorboard.log") as tb:
                start = time.monotonic()
                tb.wait_ready(args.timeout)
                print(f"tensorboard ready after {time.monotonic() - start:.1f} s at {tb.url}", flush=True)
                url = f"{tb.url}/#hparams"
                start = time.monotonic()
                if use_playwright:
                    screenshot_playwright(
                        chromium,
                        url,
                        args.out,
                        args.scatter_out,
                        args.width,
                        args.height,
                        args.settle,
                        args.timeout,
                        hparams=args.hparams,
                        metric_min=metric_min,
                        trial_id_width=args.trial_id_width,
                        scatter_hparams=args.scatter_hparams if args.scatter_hparams is not None else args.hparams,
                        scatter_metric_min=scatter_metric_min,
                        log_scale=args.log_scale,
                        scatter_width=args.scatter_width,
                    )
                else:
                    screenshot_cli(chromium, url, args.out, args.width, args.height, args.settle, args.timeout)
                    print(f"wrote {args.out} (table view)", flush=True)
                print(f"screenshots took {time.monotonic() - start:.1f} s", flush=True)
        for path in (args.out, args.scatter_out if use_playwright else None):
            if path is not None and path.is_file():
                shrink(path, args.max_width)
    except ScreenshotError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
