"""Accessibility checks in a real browser: axe-core, and WCAG contrast of every piece of text.

axe-core comes from the npm registry, pinned in `tests/support/axe/package-lock.json` and
installed by `make test` (`make axe`); it is read from those files and injected into the page,
never loaded from a CDN. Pages are opened with CSP bypassed for the injection only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.support.paths import REPO

AXE = REPO / "tests" / "support" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")

# For each element with its own text: its colour and the first non-transparent background up
# the tree, then the WCAG 2 contrast ratio of the two.
CONTRAST_JS = """
() => {
  const parse = (c) => { const m = c.match(/[\\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 0]; };
  const lin = (v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  };
  const lum = ([r, g, b]) => 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const style = getComputedStyle(el);
    if (!own || style.display === 'none' || style.visibility === 'hidden') continue;
    if (el.offsetHeight === 0) continue;
    if (parseFloat(style.opacity) === 0 || parseFloat(style.fontSize) <= 1) continue;
    const fg = lum(parse(style.color)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    found.push({text: el.textContent.trim().slice(0, 40), ratio: Math.round(ratio * 100) / 100,
                color: style.color, background: background(el).join(',')});
  }
  return found;
}
"""


def blocking_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not AXE.exists():
        raise FileNotFoundError(f"{AXE} is missing: run `make axe` (npm ci in tests/support/axe)")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [(n["target"], n.get("failureSummary", "")[:200]) for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]  # fmt: skip


def low_contrast_text(page: Page, minimum: float = 4.5) -> list[dict[str, Any]]:
    """Every visible piece of text whose contrast with its background is under `minimum`."""
    return [item for item in page.evaluate(CONTRAST_JS) if item["ratio"] < minimum]


def survey_page(page: Page, name: str, width: int, shots: Path) -> tuple[int | None, list]:
    """The page as it is now: a full-page screenshot `console-{name}-{width}.png` in `shots`,
    its width if wider than the viewport (horizontal overflow), and axe's blocking violations."""
    page.screenshot(path=str(shots / f"console-{name}-{width}.png"), full_page=True)
    wide = page.evaluate("document.documentElement.scrollWidth")
    return (wide if wide > width else None), blocking_violations(page)
