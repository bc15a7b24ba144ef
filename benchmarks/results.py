"""Where benchmark figures live: each script measures, saves what it measured as JSON beside
RESULTS.md (``benchmarks/<name>.json``), and renders one section of benchmarks/RESULTS.md and the
same section of the README's results block from that JSON alone. ``tests/test_benchmarks.py``
renders every section again from the JSON and compares it with both files, so a figure can't be
typed in by hand or drift from what a script measured.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
HEADER = "# Benchmark results\n\nWritten by the scripts in `benchmarks/`; never edited by hand.\n"
README_END = "<!-- /results -->"


class Output:
    """Where a run writes: the repository's files by default, or a folder of its own (``--out DIR``, used by the tests)."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder else HERE
        self.results = self.folder / "RESULTS.md"
        self.readme = self.folder / "README.md" if folder else ROOT / "README.md"

    def json(self, name: str) -> Path:
        return self.folder / f"{name}.json"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def shown(path: Path) -> str:
    """*path* as the text shows it: relative to the repository, or to the folder that holds it and shared/."""
    path = path.resolve()
    for folder in (ROOT, ROOT.parent):
        if path.is_relative_to(folder):
            return str(path.relative_to(folder))
    return str(path)


def section(title: str, body: str, measured_at: str, heading: str) -> str:
    return f"<!-- {title} -->\n{heading} {title}\n\n_Measured {measured_at}._\n\n{body.strip()}\n<!-- /{title} -->\n"


def sections(text: str) -> dict[str, str]:
    """Every ``<!-- title -->`` … ``<!-- /title -->`` section of *text*, by title."""
    found = {}
    for opening in re.finditer(r"<!-- ([^/>][^>]*?) -->\n", text):
        title = opening.group(1)
        end = text.find(f"<!-- /{title} -->\n", opening.start())
        if title != "results" and end >= 0:  # the README's whole results block holds the sections
            found[title] = text[opening.start(): end + len(f"<!-- /{title} -->\n")]
    return found


def _upsert(text: str, title: str, new: str, end_marker: str | None) -> str:
    pattern = re.compile(rf"<!-- {re.escape(title)} -->.*?<!-- /{re.escape(title)} -->\n", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: new, text)
    if end_marker and end_marker in text:
        return text.replace(end_marker, new + end_marker)
    return text.rstrip("\n") + "\n\n" + new


def publish(name: str, title: str, data: dict[str, Any], render: Callable[[dict[str, Any]], str], out: Output) -> str:
    """Save *data* as ``<name>.json``, then write its rendered section into RESULTS.md and the README."""
    out.folder.mkdir(parents=True, exist_ok=True)
    out.json(name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    body = render(data)
    for path, heading, end in ((out.results, "##", None), (out.readme, "###", README_END)):
        text = path.read_text(encoding="utf-8") if path.exists() else (HEADER if path == out.results else "")
        path.write_text(_upsert(text, title, section(title, body, data["measured_at"], heading), end), encoding="utf-8")
    return body


def load(name: str, out: Output | None = None) -> dict[str, Any]:
    return json.loads((out or Output()).json(name).read_text(encoding="utf-8"))
