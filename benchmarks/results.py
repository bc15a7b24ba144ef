"""Each benchmark script owns one section of benchmarks/RESULTS.md, and the same section in the
README's results block; it rewrites only that section, in both files."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = "# Benchmark results\n\nWritten by the scripts in `benchmarks/`; never edited by hand.\n"
README_END = "<!-- /results -->"


def _upsert(text: str, title: str, section: str, end_marker: str | None) -> str:
    pattern = re.compile(rf"<!-- {re.escape(title)} -->.*?<!-- /{re.escape(title)} -->\n", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: section, text)
    if end_marker and end_marker in text:
        return text.replace(end_marker, section + end_marker)
    return text.rstrip("\n") + "\n\n" + section


def write_section(title: str, body: str, level: str = "###") -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for path, heading, end in ((RESULTS, "##", None), (README, level, README_END)):
        text = path.read_text(encoding="utf-8") if path.exists() else HEADER
        section = f"<!-- {title} -->\n{heading} {title}\n\n_Measured {stamp}._\n\n{body.strip()}\n<!-- /{title} -->\n"
        path.write_text(_upsert(text, title, section, end), encoding="utf-8")
