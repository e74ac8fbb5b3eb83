"""Numbers about the package's shape (for restructuring notes): modules in the package root, manifest JSON read by
string key outside its module, ``dict[str, Any]`` in sam2flow/, README lines, and the deepest chain of module-level
imports inside the package (flows/ and tasks/ included, as installed).

    .venv/bin/python scripts/structure.py
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOPS = {"sam2flow": ROOT / "sam2flow", "sam2flow.flows": ROOT / "flows", "sam2flow.tasks": ROOT / "tasks"}
MANIFEST_READ = re.compile(
    r"(manifest|recorded|\bm)(\[\"|\.get\(\")(input|local_input|probe|video_id|frames_processed|config|stages|"
    r"random_weights|wall_seconds|outputs|checkpoints|span_keys|subsequences|config_digest|correction_prompts)"
)


def modules() -> dict[str, Path]:
    out = {}
    for name, folder in TOPS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("").parts
            parts = rel[:-1] if rel[-1] == "__init__" else rel
            out[".".join((name, *parts))] = path
    return out


def top_level_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of the package imported when ``path`` is imported (module-level statements only)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n:
                found.add(n)
    return found


def deepest_chain() -> list[str]:
    known = modules()
    graph = {m: top_level_imports(p, known) - {m} for m, p in known.items()}

    @functools.cache
    def longest(m: str, seen: frozenset[str] = frozenset()) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for n in graph[m]:
            if n not in seen:
                chain = longest(n, seen | {m})
                best = chain if len(chain) > len(best) else best
        return (m, *best)

    return list(max((longest(m) for m in graph), key=len))


def main() -> None:
    root_modules = sorted(p.name for p in (ROOT / "sam2flow").glob("*.py") if p.name != "__init__.py")
    reads = []
    for path in (ROOT / "sam2flow").rglob("*.py"):
        if path.name == "manifest.py" and path.parent.name == "sam2flow":
            continue
        reads += [f"{path.relative_to(ROOT)}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1)
                  for _ in MANIFEST_READ.finditer(line)]  # fmt: skip
    loose = sum(p.read_text().count("dict[str, Any]") for p in (ROOT / "sam2flow").rglob("*.py"))
    chain = deepest_chain()
    print(f"modules in the package root: {len(root_modules)} ({', '.join(root_modules)})")
    print(f"manifest string-key reads outside its module: {len(reads)}")
    print(f"dict[str, Any] in sam2flow/: {loose}")
    print(f"README lines: {len((ROOT / 'README.md').read_text().splitlines())}")
    print(f"deepest import chain: {len(chain)} modules: {' -> '.join(chain)}")


if __name__ == "__main__":
    sys.exit(main())
