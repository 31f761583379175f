"""The HTML report: plots, the SID trie, a self-contained page, and a real headless Chromium render."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sidkit.compare import CompareSettings, run_comparison
from sidkit.data.synthetic import SyntheticConfig, write_synthetic
from sidkit.diagnostics.usage import gini
from sidkit.ids import SemanticIds
from sidkit.report import plots
from sidkit.report.trie import build_trie, render_trie

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = ROOT / "scripts" / "install_chromium.sh"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPORT_IMAGES = 5  # usage, K_eff, penalties, retention, hierarchy


@pytest.fixture(scope="module")
def report_path(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data") / "synth"
    write_synthetic(SyntheticConfig(items=400, users=60, interactions=5000, dim=16, topics=(4, 4, 2), seed=1), data)
    settings = CompareSettings(levels=2, codebook_size=8, rhos=(0.05, 0.1, 0.3), samples=3, stability=False)
    result = run_comparison(data, ["rq-kmeans"], tmp_path_factory.mktemp("run"), settings)
    return result.report_path


def test_plots_are_png():
    counts = {"a": [np.array([5, 3, 0, 1]), np.array([2, 2, 2, 3])], "b": [np.array([9, 0, 0, 0]), np.ones(4)]}
    rhos = (0.05, 0.1, 0.2)
    series = {"a": {"level 0": (rhos, [3.9, 3.5, 2.0])}, "b": {"level 0": (rhos, [1.0, 1.0, 1.0])}}
    figures = [
        plots.usage_figure(counts),
        plots.effective_size_figure(series, {"a": {"level 0": (rhos, [4.0, 3.8, 2.5])}}, {"level 0": 4}),
        plots.effective_size_figure(series, {}, {"level 0": 4}, {"a": {"level 0": [0.1, 0.2, 0.3]}}),
        plots.penalty_figure({"a": [(0.25, 0.1, 0.05)], "b": [(0.25, 0.75, 0.0)]},
                             {"a": [(1.4, 1.1)], "b": [(4.0, 1.0)]}, 0.1),
        plots.retention_figure({"a": ((20, 50), [0.9, 1.01])}),
        plots.hierarchy_figure({"a": [0.4, 0.7]}, {"a": 0.1}),
    ]
    for png in figures:
        assert png.startswith(PNG_SIGNATURE) and len(png) > 2000


def test_full_sid_axis_spans_the_data_not_one_to_k_nom():
    """Full-SID K_eff of five methods between 1377 and 1577 of 1682: the axis spans about 2x, not 1 to 2000."""
    low, high = plots.log_limits([1377.0, 1432.0, 1577.0, 1560.0, 744.0], 1682)
    assert 744 > low > 400 and 1682 < high < 2000
    assert plots.log_limits([1.0, 1.2], 64) == pytest.approx((1 / 1.4, 64 * 1.15))


@pytest.mark.parametrize("counts", [[5, 3, 0, 1], [1, 1, 1, 1], [0, 0, 7], [3, 9, 27, 81, 0, 0]])
def test_lorenz_curve_area_is_half_the_gini(counts):
    x, y = plots.lorenz_curve(np.array(counts))
    assert (x[0], y[0], x[-1], y[-1]) == (0.0, 0.0, 1.0, 1.0)
    area_below = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
    assert 2 * (0.5 - area_below) == pytest.approx(gini(np.array(counts)))


def test_trie_counts_cosines_and_limits():
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 0], [1, 0], [1, 0], [1, 0], [2, 1]])
    x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 2.0], [-1.0, 0.0]])
    labels = [f"item {i}" for i in range(8)]
    labels[3] = "<script>alert(1)</script>"
    ids = SemanticIds(codes, (3, 2))
    full = build_trie(ids, x, labels)
    assert full.count == 8 and [child.prefix for child in full.children] == [(1,), (0,), (2,)]
    assert [child.prefix for child in full.children[1].children] == [(0, 0), (0, 1)]
    assert full.hidden_children == 0 and full.children[0].children[0].labels[3] == "item 6"

    # A budget of 4 prefixes: the three level-0 prefixes, then only the largest of depth 2.
    root = build_trie(ids, x, labels, max_nodes=4, max_labels=2)
    assert [child.prefix for child in root.children] == [(1,), (0,), (2,)]
    ones, zeros, two = root.children
    assert ones.mean_cosine == pytest.approx(1.0)
    (leaf,) = ones.children
    assert leaf.prefix == (1, 0) and leaf.count == 4 and leaf.hidden_labels == 2
    assert zeros.children == () and zeros.hidden_children == 2 and two.hidden_children == 1
    assert zeros.mean_cosine == pytest.approx(np.mean([1.0, 2 ** -0.5, 2 ** -0.5]))
    assert np.isnan(two.mean_cosine)  # a single item has no pairs
    html = render_trie(root)
    assert html.count("<details") == 4  # (1,), (1,0), (0,), (2,)
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "and 2 more" in html and "and 2 smaller prefixes" in html and "and 1 smaller prefix<" in html


def test_report_is_self_contained(report_path):
    html = report_path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) == REPORT_IMAGES
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from elsewhere
    for section in ("Summary", "Code usage per level", "Effective codebook size", "penalties",
                    "Hit-rate retention", "Prefix hierarchy", "SID trie"):
        assert section in html
    assert "<details" in html


def find_or_install_chromium() -> str:
    for candidate in ("chromium", "chromium-browser"):
        if found := shutil.which(candidate):
            return found
    try:
        result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"Chromium is not installed and {INSTALL_SCRIPT.name} could not run: {error}")
    found = shutil.which("chromium")
    if result.returncode != 0 or not found:
        pytest.skip(f"Chromium is not installed and {INSTALL_SCRIPT.name} could not install it "
                    f"(exit {result.returncode}): {(result.stderr or result.stdout).strip()[-300:]}")
    return found


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def test_report_renders_in_headless_chromium(report_path, tmp_path):
    chromium = find_or_install_chromium()
    url = report_path.resolve().as_uri()
    # The page's own script marks <body data-images="ok N/N"> once every image has decoded.
    dom = run_chromium(chromium, tmp_path / "profile-dom", "--virtual-time-budget=10000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    status = re.search(r'<body[^>]*data-images="([^"]+)"', dom.stdout)
    assert status is not None, "the image check never ran: " + dom.stdout[:500]
    assert status.group(1) == f"ok {REPORT_IMAGES}/{REPORT_IMAGES}"

    shot = tmp_path / "report.png"
    run = run_chromium(chromium, tmp_path / "profile-shot", "--window-size=1280,2000", f"--screenshot={shot}", url)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1280)
    # Not blank: plenty of non-white pixels and real contrast (text, plot lines, bars).
    assert (pixels < 200).mean() > 0.02
    assert pixels.std() > 20
