"""Loads a luna run report in headless Chromium (Debian's `chromium`, driven by Playwright over
CDP) with the network off, and reports what a reader would see, as JSON on stdout:
console errors and page errors, requests that left file://, images and whether each loaded
(naturalWidth > 0), which sections exist, and the text of the failures section.
A full-page screenshot is written to the given path.

Usage: report_browser.py <report.html> <screenshot.png> [chromium executable]
"""
import json
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main():
    report = Path(sys.argv[1]).resolve()
    shot = Path(sys.argv[2])
    exe = sys.argv[3] if len(sys.argv) > 3 else (shutil.which("chromium") or shutil.which("chromium-browser"))
    out = {"console_errors": [], "page_errors": [], "external_requests": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=exe,
            headless=True,
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-gpu"],
        )
        ctx = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        page.on("console", lambda m: out["console_errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: out["page_errors"].append(str(e)))

        def on_request(r):
            if not (r.url.startswith("file:") or r.url.startswith("data:")):
                out["external_requests"].append(r.url)

        page.on("request", on_request)
        page.goto(report.as_uri(), wait_until="load")
        out["title"] = page.title()
        out["images"] = page.evaluate(
            """() => [...document.images].map(i => ({
                alt: i.alt, cls: i.className, complete: i.complete, naturalWidth: i.naturalWidth }))"""
        )
        out["sections"] = page.evaluate("() => [...document.querySelectorAll('section')].map(s => s.id)")
        out["froc_images"] = page.evaluate("() => document.querySelectorAll('#froc img').length")
        out["gallery_titles"] = page.evaluate(
            "() => [...document.querySelectorAll('.diagnosis h3')].map(h => h.textContent)"
        )
        out["gallery_tiles"] = page.evaluate("() => document.querySelectorAll('.gallery .tile img').length")
        out["timeline_bars"] = page.evaluate("() => document.querySelectorAll('#timeline svg rect').length")
        out["failures_text"] = page.evaluate(
            "() => { const f = document.querySelector('#failures'); return f ? f.innerText : null; }"
        )
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
