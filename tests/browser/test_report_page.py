"""report.html in a real browser: Debian's chromium, headless (`make browser-test` installs it).

The demo writes the sample scenario into an output folder exactly as a person gets it;
the worst batch's report.html is opened from there (file://), its DOM as chromium built
it is checked (title, the drift table, one drawing per feature), its relative links are
followed on disk, and the screenshot's pixels show the drawings were painted. The PNG is
kept under out/browser-test/ (BROWSER_TEST_OUT overrides) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from modelwatch.local.demo import run_demo
from modelwatch.report_html import BATCH_COLOUR, DRIFTED_COLOUR, REFERENCE_COLOUR
from tests.html_page import Page

REPO_ROOT = Path(__file__).resolve().parents[2]
WINDOW = (1200, 1700)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: run `make browser-test`, which installs Debian's chromium")
    return found


def run_chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: the test runs as root, where chromium's sandbox refuses to start.
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory, sample_churn_model_dir) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert run_demo(out, model_dir=sample_churn_model_dir) == 0
    return out / "results"


def worst_report(results: Path) -> Path:
    """The scored batch with the highest ErrorRate: the page an on-call person opens first."""
    reports = [
        (json.loads(path.read_text())["metrics"].get("ErrorRate", -1.0), path)
        for path in results.glob("*/versions/*/report.json")  # each version's, with its page beside it
    ]
    return max(reports)[1]


def painted(image: Image.Image, colour: str) -> int:
    """Pixels of exactly this colour (the bars are flat fills, no anti-aliasing inside)."""
    wanted = tuple(int(colour[index : index + 2], 16) for index in (1, 3, 5))
    return sum(
        count for count, pixel in image.convert("RGB").getcolors(WINDOW[0] * WINDOW[1]) if pixel == wanted
    )


def test_the_worst_batch_report_renders_in_chromium(demo_results, tmp_path):
    # Given the demo's output folder, as `make demo` leaves it
    report_json = worst_report(demo_results)
    report = json.loads(report_json.read_text())
    page_path = report_json.with_name("report.html")
    out = Path(os.environ.get("BROWSER_TEST_OUT", REPO_ROOT / "out" / "browser-test"))
    out.mkdir(parents=True, exist_ok=True)
    screenshot = out / f"report-{report_json.parent.name}.png"

    # When chromium opens the page from disk
    dom = run_chromium("--dump-dom", page_path.as_uri(), profile=tmp_path / "profile").stdout
    run_chromium(f"--screenshot={screenshot}", page_path.as_uri(), profile=tmp_path / "profile")

    # Then the document it built has the title, the drift table and a drawing per feature
    page = Page(dom)
    assert page.title == f"modelwatch ok: {report['batch']['key']}"
    assert report["metrics"]["ErrorRate"] > 0.3  # the sample story's worst batch
    drawings = [svg for svg in page.tags("svg") if "distribution" in (svg.get("class") or "")]
    features = report["drift"]["features"]
    assert len(drawings) == len(features) + 1  # and the prediction's
    assert [table.get("class") for table in page.tags("table")].count("drift") == 1
    for detail in features:
        assert detail["name"] in page.text
    # Its links lead to the files beside it in the output folder
    for anchor in page.tags("a"):
        assert (page_path.parent / str(anchor["href"])).is_file(), anchor
    # And the screenshot shows the bars painted, reference, batch and drifted alike
    image = Image.open(screenshot)
    assert image.size == WINDOW
    for colour in (REFERENCE_COLOUR, BATCH_COLOUR, DRIFTED_COLOUR):
        assert painted(image, colour) > 200, colour
