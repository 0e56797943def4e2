"""Screenshot of a luna run report's galleries (true positives, false positives, missed
nodules), for the README and issue notes: headless Chromium (Debian's `chromium`, driven by
Playwright), network off, one PNG of the report's diagnosis section.

Usage: report_shot.py <report.html> <out.png> [chromium executable]
Run with the test venv's Python (`scripts/env.sh` with LUNA_ENV=test installs Playwright).
"""
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    report = Path(sys.argv[1]).resolve()
    shot = Path(sys.argv[2])
    exe = sys.argv[3] if len(sys.argv) > 3 else (shutil.which("chromium") or shutil.which("chromium-browser"))
    if not report.is_file():
        raise SystemExit(f"{report}: no such report; `luna report RUN` writes one")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=exe,
            headless=True,
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-gpu"],
        )
        page = browser.new_context(offline=True, viewport={"width": 1280, "height": 900}).new_page()
        page.goto(report.as_uri(), wait_until="load")
        section = page.query_selector(".diagnosis")
        if section is None:
            raise SystemExit(f"{report}: no diagnosis section with galleries (did the run diagnose?)")
        section.screenshot(path=str(shot))
        browser.close()
    print(shot)


if __name__ == "__main__":
    main()
