"""The HTML report in a real browser: scripts run under its CSP, charts render, hostile labels stay inert.

Needs Debian's headless chromium (`apt-get install chromium`); skipped when it is missing unless
ENVKIT_REQUIRE_BROWSER is set, which turns the skip into a failure.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from envkit.gate import run_gate
from envkit.policy import load_policy
from envkit.report import Report, load_report
from envkit.views import reports_html

pytestmark = pytest.mark.browser

FIXTURES = Path(__file__).parents[1] / "unit" / "fixtures" / "reports"
HOSTILE = '<script>document.documentElement.setAttribute("data-pwned","1")</script><img src=x onerror="x()">'
BAR_BLUE = (0x09, 0x69, 0xDA)


def _chromium() -> str:
    found = next(
        (
            path
            for path in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
            if path and os.access(path, os.X_OK)
        ),
        None,
    )
    if found is None:
        if os.environ.get("ENVKIT_REQUIRE_BROWSER"):
            pytest.fail("chromium is missing and ENVKIT_REQUIRE_BROWSER is set (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return found


def _run_chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        *extra,
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


@pytest.fixture
def page(tmp_path: Path) -> Path:
    reports = [load_report(path) for path in sorted(FIXTURES.glob("*.json"))]
    reports.append(_hostile(reports[0]))
    path = tmp_path / "report.html"
    path.write_text(reports_html(reports), encoding="utf-8")
    return path


def _hostile(report: Report) -> Report:
    assert report.image is not None
    return dataclasses.replace(report, image=dataclasses.replace(report.image, ref=HOSTILE))


def test_scripts_ran_and_charts_are_in_the_live_dom(tmp_path: Path, page: Path) -> None:
    dom = _run_chromium(tmp_path, page, "--dump-dom").stdout
    parser = _Elements()
    parser.feed(dom)
    root = next(attrs for tag, attrs in parser.elements if tag == "html")
    assert root.get("data-js") == "ready"  # the inline script ran: its CSP hash is right
    assert "data-pwned" not in root  # the hostile label's script did not
    bars = [attrs for tag, attrs in parser.elements if tag == "rect" and "bar" in (attrs.get("class") or "")]
    assert root.get("data-bars") == str(len(bars))
    per_chart = {
        chart: [b for b in bars if b.get("data-chart") == chart] for chart in ("decode", "itl", "kv")
    }
    # 5 reports; the failed one has no throughput numbers
    assert (len(per_chart["decode"]), len(per_chart["itl"]), len(per_chart["kv"])) == (4, 8, 4)
    assert sorted(float(b["data-value"] or 0) for b in per_chart["kv"]) == [
        3.1,
        5.9,
        5.9,
        6.4,
    ]  # the hostile copy is the A100 report
    assert any(b.get("data-image", "").startswith(HOSTILE) for b in per_chart["decode"])
    assert not any(tag == "img" for tag, _ in parser.elements)


def test_screenshot_shows_the_bars(tmp_path: Path, page: Path) -> None:
    shot = tmp_path / "shot.png"
    _run_chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1000,2600", "--hide-scrollbars")
    width, height, pixels = _decode_png(shot.read_bytes())
    assert (width, height) == (1000, 2600)
    blue = sum(1 for pixel in pixels if _near(pixel, BAR_BLUE))
    assert blue > 2000, f"only {blue} bar-coloured pixels: the charts did not render"
    assert len(set(pixels)) > 20  # not a blank page


RELEASABLE_GREEN = (0xDA, 0xFB, 0xE1)
BLOCKED_RED = (0xFF, 0xEB, 0xE9)
POLICY = "version: 1\nrequire: {env.torch: [PASS], gpu.visibility: [PASS]}\nallow_skip: [gpu.*]\n"


class _Verdicts(HTMLParser):
    """The verdict items of a page: their attributes and their text, plus every <time> and the policy."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[tuple[dict[str, str | None], list[str]]] = []
        self.times: list[str | None] = []
        self.policy: str | None = None
        self.order: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.order.append(str(found["id"]))
        if tag == "section" and found.get("id") == "verdict":
            self.policy = found.get("data-policy")
        if tag == "li" and "verdict" in (found.get("class") or ""):
            self.items.append((found, []))
            self._depth = 1
        elif self._depth and tag not in ("br",):
            self._depth += 1
        if tag == "time":
            self.times.append(found.get("datetime"))

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.items[-1][1].append(data)


@pytest.fixture
def verdict_page(tmp_path: Path) -> tuple[Path, Path]:
    policy_file = tmp_path / "release-policy.yaml"
    policy_file.write_text(POLICY)
    h100 = load_report(FIXTURES / "h100-full-pass.json")
    rerun = dataclasses.replace(h100, created="2025-03-15T10:30:00Z")
    broken = load_report(FIXTURES / "h100-cpu-torch-oom-fail.json")
    reports = [h100, broken, rerun]
    path = tmp_path / "verdict.html"
    path.write_text(reports_html(reports, run_gate(reports, load_policy(policy_file))), encoding="utf-8")
    return path, policy_file


def test_verdict_banner_policy_and_times_in_the_live_dom(
    tmp_path: Path, verdict_page: tuple[Path, Path]
) -> None:
    page, policy_file = verdict_page
    dom = _run_chromium(tmp_path, page, "--dump-dom").stdout
    parser = _Verdicts()
    parser.feed(dom)
    assert parser.order.index("verdict") < parser.order.index("status")  # the verdict comes first
    assert parser.policy == str(policy_file)
    assert str(policy_file) in dom.split('id="verdict"', 1)[1].split("</section>", 1)[0]
    releasable = [attrs.get("data-releasable") for attrs, _ in parser.items]
    assert releasable == ["true", "false", "true"]
    blocked = " ".join(parser.items[1][1])
    assert "NOT RELEASABLE" in blocked and "env.torch FAIL" in blocked
    names = [attrs.get("data-image") for attrs, _ in parser.items]
    assert len(set(names)) == 3  # two reports of one image are told apart
    assert {"2025-03-15T10:30:00Z", load_report(FIXTURES / "h100-full-pass.json").created} <= set(
        parser.times
    )
    assert "sha256:" in " ".join(parser.items[0][1])  # the image id


def test_screenshot_shows_green_and_red_verdicts_at_the_top(
    tmp_path: Path, verdict_page: tuple[Path, Path]
) -> None:
    page, _ = verdict_page
    shot = tmp_path / "verdict.png"
    _run_chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1000,600", "--hide-scrollbars")
    width, _, pixels = _decode_png(shot.read_bytes())
    top = pixels[: width * 600]
    green = sum(1 for pixel in top if _near(pixel, RELEASABLE_GREEN))
    red = sum(1 for pixel in top if _near(pixel, BLOCKED_RED))
    assert green > 5000 and red > 2000, (green, red)


def _near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 6 for a, b in zip(pixel[:3], colour, strict=True))


def _decode_png(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """Enough of PNG for chromium's screenshots: 8-bit RGB or RGBA, not interlaced."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        row = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, channels)
        rows.append(row)
        previous = row
    pixels = [tuple(row[x : x + channels]) for row in rows for x in range(0, stride, channels)]
    return width, height, pixels


def _unfilter(kind: int, row: bytearray, prev: bytearray, bpp: int) -> bytearray:
    if kind == 0:
        return row
    if kind == 2:
        return bytearray((a + b) & 0xFF for a, b in zip(row, prev, strict=True))
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
        if kind == 1:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + (left + up) // 2) & 0xFF
        else:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
            row[i] = (row[i] + pred) & 0xFF
    return row
