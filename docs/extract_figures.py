"""Copy one figure per lesson from the committed notebooks into docs/lessons/ for the README.

Run after `make notebooks`:  .venv/bin/python docs/extract_figures.py
It picks each notebook's first PNG output (or the cell tagged/commented `# README figure`).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "lessons"


def pick_png(notebook: Path) -> bytes | None:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    first: bytes | None = None
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", []))
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                png = base64.b64decode(data["image/png"])
                if "# README figure" in source:
                    return png
                if first is None:
                    first = png
    return first


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    missing = []
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")):
        png = pick_png(notebook)
        if png is None:
            missing.append(notebook.name)
            continue
        (OUT / f"{notebook.stem}.png").write_bytes(png)
        print(f"docs/lessons/{notebook.stem}.png  ({len(png) // 1024} KiB)")
    if missing:
        print("no figure in:", ", ".join(missing), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
