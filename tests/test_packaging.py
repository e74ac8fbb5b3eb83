"""Packaging and layering: the wheel holds one `sam2flow` package (flows, tasks and the checkpoint table inside it),
the library imports no Prefect, and the code keeps the shape the design asks for."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
import typing
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ("sam2flow", "flows", "tasks")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "out", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp), str(src)],
        check=True,
        capture_output=True,
    )
    (path,) = tmp.glob("sam2flow-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_has_one_top_level_package(wheel: zipfile.ZipFile) -> None:
    """flows/ and tasks/ install as sam2flow.flows and sam2flow.tasks (no top-level `flows` or `tasks` to collide with
    other projects), and the checkpoint table ships as sam2flow/checkpoints/manifest.yaml, identical to the file in
    the repository's checkpoints/."""
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"sam2flow"}
    assert {"sam2flow/core/stitching.py", "sam2flow/flows/process_video.py", "sam2flow/tasks/segment.py"} <= set(names)
    assert wheel.read("sam2flow/checkpoints/manifest.yaml") == (ROOT / "checkpoints" / "manifest.yaml").read_bytes()
    studio = {f"sam2flow/studio/static/{p.name}" for p in (ROOT / "sam2flow" / "studio" / "static").iterdir()}
    assert studio and studio <= set(names)  # the studio's pages, styles and scripts


def test_every_package_folder_is_declared() -> None:
    """Every folder with an __init__.py under sam2flow/, flows/ and tasks/ is in pyproject's package list."""
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    mapping = {"sam2flow": "sam2flow", "flows": "sam2flow.flows", "tasks": "sam2flow.tasks"}
    found = {"sam2flow.checkpoints"}
    for top, name in mapping.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found == declared


def test_import_sam2flow_needs_neither_prefect_nor_torch() -> None:
    """`import sam2flow` and its pure core import neither Prefect, torch, nor the flows/tasks packages."""
    code = (
        "import sys, sam2flow, sam2flow.config, sam2flow.core.planning, sam2flow.core.stitching, sam2flow.core.prompts;"
        "bad = [m for m in ('prefect', 'torch', 'sam2flow.flows', 'sam2flow.tasks', 'ultralytics', 'sam2')"
        " if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (at any depth, functions included), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.lineno, node.module), *((node.lineno, f"{node.module}.{a.name}") for a in node.names)]
    return out


DOORS = {
    ("sam2flow/cli.py", "sam2flow.flows.launch"),  # how the command line starts flows
    ("sam2flow/cli.py", "sam2flow.flows.remote"),  # the deployment name the studio's --deployment defaults to
    ("sam2flow/studio/runs.py", "sam2flow.flows.remote"),  # Run through a served deployment
    ("sam2flow/studio/app.py", "sam2flow.flows.remote"),
}
"""The only places where the library reaches Prefect: the CLI's launcher and the one client module."""


def test_library_reaches_prefect_only_through_its_two_doors() -> None:
    """No module of the library imports Prefect or a top-level flows/tasks package; it reaches sam2flow.flows only
    through `sam2flow.flows.launch` (from the CLI) and the client `sam2flow.flows.remote`, and neither flows/ nor
    tasks/ import the studio or the CLI (no ties back). Importing every library module, and the client, loads no
    Prefect."""
    offenders, doors = [], set()
    for path in (ROOT / "sam2flow").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        for line, name in _imports(path):
            top = name.split(".")[0]
            if top in ("prefect", *CODE[1:]):
                offenders.append(f"{rel}:{line}: {name}")
            if name.startswith(("sam2flow.flows.", "sam2flow.tasks")) and name.count(".") == 2:
                doors.add((rel, name))
    assert offenders == []
    assert doors == DOORS
    for top in CODE[1:]:
        for path in (ROOT / top).rglob("*.py"):
            ties = [n for _, n in _imports(path) if n.startswith(("sam2flow.studio", "sam2flow.cli"))]
            assert ties == [], f"{top}/{path.name} imports {ties}"
    modules = [m.name for m in pkgutil.walk_packages([str(ROOT / "sam2flow")], "sam2flow.")]
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {[*modules, 'sam2flow.flows.remote']!r}];"
        "sys.exit('prefect' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, "importing the library loaded Prefect: " + proc.stderr[-2000:]


def _functions(top: str) -> list[tuple[str, int]]:
    out = []
    for path in (ROOT / top).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1))
    return out


def test_no_function_is_longer_than_80_lines() -> None:
    """Functions stay short enough to read at once (docstrings included)."""
    long = [(name, n) for top in CODE for name, n in _functions(top) if n > 80]
    assert long == []


def test_tasks_exchange_typed_records() -> None:
    """No task or flow takes or returns an untyped dict (or Any): stages exchange the records of sam2flow.results."""
    from prefect import Flow, Task

    loose = []
    for package in ("sam2flow.tasks", "sam2flow.flows"):
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__, f"{package}."):
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if isinstance(obj, Task | Flow) and obj.fn.__module__ == module.__name__:
                    for name, hint in typing.get_type_hints(obj.fn).items():
                        text = str(hint)
                        if "dict[" in text or "typing.Any" in text or hint is dict:
                            loose.append(f"{info.name}.{obj.fn.__name__}: {name}: {text}")
    assert loose == []


def test_tests_are_documented_and_share_helpers_through_helper_modules() -> None:
    """Every test says in a docstring what it checks; no test module imports another (shared helpers live in helper
    modules such as tests/smoke.py); each stage of sam2flow/stages has a test module named after it."""
    tests = ROOT / "tests"
    undocumented, crossed = [], []
    for path in sorted(tests.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        undocumented += [f"{path.name}:{n.name}" for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                         and n.name.startswith("test_") and not ast.get_docstring(n)]  # fmt: skip
        crossed += [f"{path.name}: {name}" for _, name in _imports(path) if name.startswith("tests.test_")]
    assert undocumented == [] and crossed == []
    stages = {p.stem if p.is_file() else p.name for p in (ROOT / "sam2flow" / "stages").iterdir()}
    stages -= {"__init__", "__pycache__"}
    assert stages == {"prepare", "finetune", "extract", "segment", "stitch", "render", "finalize"}
    assert all((tests / f"test_{stage}.py").is_file() for stage in stages)


def _anchors(markdown: str) -> set[str]:
    """The heading anchors of a Markdown page, as GitHub and MkDocs make them."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            text = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower().replace("`", ""))
            out.add(text.replace(" ", "-"))
    return out


def test_the_readme_links_to_pages_and_anchors_that_exist() -> None:
    """Every relative link in README.md names a file of the repository, and a heading of it where it names one (the
    docs site's own links are checked by `mkdocs build --strict` in scripts/test.sh)."""
    readme = (ROOT / "README.md").read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        page = ROOT / path if path else ROOT / "README.md"
        if not page.exists() or (anchor and anchor not in _anchors(page.read_text())):
            broken.append(target)
    assert broken == []
    assert len(readme.splitlines()) <= 250, "the README is the door; the manual is the docs site"
