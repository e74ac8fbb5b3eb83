"""MkDocs hook: pages of the docs site take sections of README.md (between ``<!-- --8<-- [start:NAME] -->`` and
``<!-- --8<-- [end:NAME] -->``) and whole files of the repository (BENCHMARKS.md) with ``{{ include FILE[#NAME] }}``,
so each text has one source; links are rewritten from the repository's layout to the site's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = re.compile(r"^\{\{ include (?P<file>[\w.]+)(?:#(?P<section>[\w-]+))? \}\}$", re.M)
SITE = {"#outputs": "outputs.md", "#configuration": "configuration.md", "#commands": "commands.md",
        "#where-to-look-first": "review.md",
        "BENCHMARKS.md": "benchmark-results.md", "README.md": "index.md"}  # fmt: skip
"""Where a README link that is not a docs/ page goes on the site."""


def _section(text: str, name: str) -> str:
    start, end = f"<!-- --8<-- [start:{name}] -->", f"<!-- --8<-- [end:{name}] -->"
    if start not in text or end not in text:
        raise ValueError(f"README.md has no section {name!r} (markers {start} … {end})")
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def _site_links(text: str) -> str:
    def link(m: re.Match[str]) -> str:
        target = m.group(2)
        if target.startswith("docs/"):
            target = target.removeprefix("docs/")
        elif target.split("#")[0] in SITE or target in SITE:
            target = SITE.get(target) or SITE[target.split("#")[0]]
        return f"[{m.group(1)}]({target})"

    return re.sub(r"\[([^\]]*)\]\(([^)\s]+)\)", link, text)


def include(match: re.Match[str]) -> str:
    """The text an include line stands for, with its links made the site's."""
    text = (ROOT / match.group("file")).read_text()
    if match.group("section"):
        text = _section(text, match.group("section"))
    return _site_links(text)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Expand the includes; a page that is only an include gets its first heading as the page's title (``#``)."""
    whole = markdown.strip().count("\n") == 0 and INCLUDE.fullmatch(markdown.strip()) is not None
    out = INCLUDE.sub(include, markdown)
    return re.sub(r"^## ", "# ", out, count=1, flags=re.M) if whole else out
