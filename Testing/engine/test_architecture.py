"""The floors of docs/ARCHITECTURE.md, held against the code: no engine module imports a module of a
higher floor (imports for type hints only are exempt), the front ends take nothing from the engine
but its torch-free contract and errors, and the engine never imports the benchmarks."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "Logic" / "semiseg"
FLOORS_DOC = ROOT / "docs" / "ARCHITECTURE.md"

FLOORS = {
    "contract": 0,
    "errors": 1,
    "settings": 1,
    "io": 2,
    "models": 2,
    "blocks": 3,
    "methods": 4,
    "training": 5,
    "inference": 6,
    "completion": 7,
    "job": 8,
    "demo": 8,
    "cli": 9,
    "__main__": 9,
}
"""Room (a module or a folder of ``semiseg``) -> floor: a room may import its own floor and those below."""


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _module_of(path: Path) -> str:
    base = next(b for b in (ENGINE.parent, ROOT / "SemiSegSlicer", ROOT / "Web") if path.is_relative_to(b))
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_only_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path`` outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skip = _type_only_lines(tree)
    here = _module_of(path)
    package = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            found += [(node.lineno, target)] + [(node.lineno, n) for n in names if _is_module(n)]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    return (ENGINE.parent / rel).is_dir() or (ENGINE.parent / rel).with_suffix(".py").is_file()


def test_every_room_of_the_engine_has_a_floor_and_the_doc_names_it():
    rooms = {p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__"}
    rooms |= {p.name for p in ENGINE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == set(FLOORS), "a new module or folder of semiseg needs its floor here and in docs/ARCHITECTURE.md"
    doc = FLOORS_DOC.read_text()
    for room in FLOORS:
        shown = f"`{room}/`" if (ENGINE / room).is_dir() else f"`{room}.py`"
        assert shown in doc, f"docs/ARCHITECTURE.md does not show {shown}"


@pytest.mark.parametrize("path", sorted(ENGINE.rglob("*.py")), ids=lambda p: str(p.relative_to(ENGINE)))
def test_no_engine_module_imports_a_higher_floor_or_the_benchmarks(path):
    room = _room(_module_of(path))
    if room == "__init__":
        return
    top_level = {n.lineno for n in ast.parse(path.read_text()).body}
    for line, target in _imports(path):
        if target.startswith("semiseg_bench"):  # only `semiseg bench`, inside the function that runs it
            assert room == "cli" and line not in top_level, f"{path.name}:{line} imports the benchmarks"
        if not target.startswith("semiseg."):
            continue
        other = _room(target)
        assert FLOORS[other] <= FLOORS[room], (
            f"{path.relative_to(ROOT)}:{line} ({room}, floor {FLOORS[room]}) imports {target} "
            f"({other}, floor {FLOORS[other]}): the floors of docs/ARCHITECTURE.md run the other way"
        )


FRONT_ENDS = [ROOT / "SemiSegSlicer", ROOT / "Web"]


@pytest.mark.parametrize(
    "path",
    sorted(p for d in FRONT_ENDS for p in d.rglob("*.py") if "__pycache__" not in p.parts),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_front_ends_take_only_the_torch_free_contract_and_errors_from_the_engine(path):
    for line, target in _imports(path):
        if target == "semiseg" or target.startswith("semiseg."):
            assert re.fullmatch(r"semiseg(\.(contract|errors)(\.\w+)?)?", target), (  # `semiseg` alone loads nothing
                f"{path.relative_to(ROOT)}:{line} imports {target}: the front ends run the engine as a job, and "
                "share only semiseg.contract and semiseg.errors with it"
            )


def test_the_engine_is_a_floor_plan_without_a_circle():
    """Within a floor, rooms may import each other; no two rooms import each other (checked module by module)."""
    graph: dict[str, set[str]] = {}
    for path in ENGINE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        graph[_module_of(path)] = {t for _, t in _imports(path) if t.startswith("semiseg.") and _is_module(t)}

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        for n in graph.get(a, ()):
            if n == b:
                return True
            if n not in seen:
                seen.add(n)
                if reaches(n, b, seen):
                    return True
        return False

    circles = [(a, b) for a in graph for b in graph[a] if b in graph and reaches(b, a, set())]
    assert not circles, f"import circles: {circles}"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_command_line_imports_where_resource_does_not_exist():
    """Windows has no ``resource`` module: ``python -m semiseg`` must not need it (only a benchmark does)."""
    proc = _python("import sys; sys.modules['resource'] = None; import semiseg.cli; semiseg.cli.main(['--help'])")
    assert 'usage: semiseg' in proc.stdout, proc.stderr
    assert proc.returncode == 0, proc.stderr


def test_the_contract_and_the_job_checks_import_without_torch():
    proc = _python(
        "import sys; sys.modules['torch'] = None; sys.modules['monai'] = None\n"
        "import semiseg.contract, semiseg.errors, semiseg.settings, semiseg.training.config, semiseg.training.recipes\n"
        "print(semiseg.contract.DEFAULT_METHOD)"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "unimatch", proc.stderr
