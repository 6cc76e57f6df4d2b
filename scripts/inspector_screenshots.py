"""Take the README's inspector screenshots with the browser tests' headless Chromium.

    .venv/bin/python scripts/inspector_screenshots.py DEMO_HOME TOY_HOME docs/

DEMO_HOME: a home made by ``stagebus demo`` (its ledger is shot); TOY_HOME: a home made by
``tests/support/inspector.build_home`` (the "why" of its failing partition nums/b is shot).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.browser import chromium  # noqa: E402
from support.inspector import serve  # noqa: E402


def main() -> int:
    demo, toy, out = (Path(a) for a in sys.argv[1:4])
    with serve(demo) as server, chromium(width=1100, height=620) as browser:
        browser.get(server.url + "/ledger?limit=14")  # type: ignore[attr-defined]
        browser.save_screenshot(str(out / "inspector-ledger.png"))  # type: ignore[attr-defined]
    with serve(toy) as server, chromium(width=1100, height=560) as browser:
        browser.get(server.url + "/partition?dataset=nums&partition=b")  # type: ignore[attr-defined]
        browser.save_screenshot(str(out / "inspector-why.png"))  # type: ignore[attr-defined]
    for name in ("inspector-ledger.png", "inspector-why.png"):
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
