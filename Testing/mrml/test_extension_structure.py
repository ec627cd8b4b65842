"""The extension follows the Slicer Extensions Index rules and the project's own (docs, DESIGN.md)."""

from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from semiseg.contract import DEFAULT_METHOD, METHOD_LABELS

from mrmltesting import ROOT

MODULE = ROOT / "SemiSegSlicer"
MODULE_FILE = MODULE / "SemiSegSlicer.py"
LIB = MODULE / "SemiSegSlicerLib"
UI_FILE = MODULE / "Resources" / "UI" / "SemiSegSlicer.ui"
FILE_SCOPE_ALLOWED = {"slicer", "qt", "ctk", "vtk", "numpy", "SemiSegSlicerLib", "semiseg.contract"}
LIB_ALLOWED = {
    "slicer",
    "vtk",
    "numpy",
    "semiseg.contract",
}  # the engine's torch-free contract, shared by every front end
# Installing the engine's packages inside Slicer (imported when called): the PyTorch extension and pip's packaging.
LIB_ALLOWED_IN = {"dependencies.py": {"PyTorchUtils", "packaging"}}
METHODS = set(METHOD_LABELS)


def _cmakeList(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} is not set"
    return [item.replace("${MODULE_NAME}", "SemiSegSlicer") for item in match.group(1).split()]


def test_top_level_cmakelists_has_the_index_metadata():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"^cmake_minimum_required\(VERSION [\d.]+", text, re.M)
    assert re.search(r"^project\(SemiSegSlicer\)$", text, re.M)
    fields = dict(re.findall(r'^set\((EXTENSION_[A-Z]+) "([^"\n]*)"\)', text, re.M))
    for name in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert fields.get(f"EXTENSION_{name}"), f"EXTENSION_{name} must be set on one line, quoted"
    assert fields["EXTENSION_CATEGORY"] == "Segmentation"
    assert fields["EXTENSION_DEPENDS"] == "PyTorch"
    assert fields["EXTENSION_ICONURL"].endswith("Resources/Icons/SemiSegSlicer.png")
    for line in (
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(SemiSegSlicer)",
        "add_subdirectory(Logic)",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ):
        assert line in text


def test_module_cmakelists_lists_every_script_and_resource():
    text = (MODULE / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule(" in text
    scripts = _cmakeList(text, "MODULE_PYTHON_SCRIPTS")
    resources = _cmakeList(text, "MODULE_PYTHON_RESOURCES")
    for name in scripts + resources:
        assert (MODULE / name).is_file(), f"{name} is listed in SemiSegSlicer/CMakeLists.txt but missing"
    onDisk = {str(p.relative_to(MODULE)) for p in MODULE.glob("*.py")} | {
        str(p.relative_to(MODULE)) for p in LIB.glob("*.py")
    }
    assert onDisk == set(scripts), "every .py of the module and of SemiSegSlicerLib must be listed"
    assert {str(p.relative_to(MODULE)) for p in (MODULE / "Resources").rglob("*") if p.is_file()} == set(resources)
    assert not [p for p in LIB.rglob("*") if p.is_dir() and p.name != "__pycache__"], "SemiSegSlicerLib is flat"


def test_logic_cmakelists_installs_the_engine_package():
    text = (ROOT / "Logic" / "CMakeLists.txt").read_text()
    assert re.search(r"GLOB_RECURSE\s+SEMISEG_PYTHON_SCRIPTS", text)
    assert "semiseg/*.py" in text and "ctkMacroCompilePythonScript(" in text
    assert "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR" in text
    for name in ("__init__.py", "__main__.py"):  # `python -m semiseg` needs both
        assert (ROOT / "Logic" / "semiseg" / name).is_file()


def _imports(tree: ast.AST, fileScopeOnly: bool):
    """(module, line) of imports; at file scope = not inside a function (class bodies run at import)."""
    found = []

    def visit(node, inFunction):
        for child in ast.iter_child_nodes(node):
            isFunction = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import) and not (fileScopeOnly and inFunction):
                found.extend((alias.name, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and not (fileScopeOnly and inFunction):
                found.append(("." * child.level + (child.module or ""), child.lineno))
            visit(child, inFunction or isFunction)

    visit(tree, False)
    return found


def _allowed(module: str, extra: set[str]) -> bool:
    root = module.split(".")[0]
    return module.startswith(".") or root in sys.stdlib_module_names or root in extra or module in extra


def test_module_imports_only_slicer_qt_ctk_vtk_numpy_and_stdlib_at_file_scope():
    tree = ast.parse(MODULE_FILE.read_text())
    bad = [(m, line) for m, line in _imports(tree, fileScopeOnly=True) if not _allowed(m, FILE_SCOPE_ALLOWED)]
    assert not bad, f"third-party imports at file scope (import them inside functions): {bad}"
    everywhere = {m.split(".")[0] for m, _ in _imports(tree, fileScopeOnly=False) if m != "semiseg.contract"}
    assert not everywhere & {"torch", "monai", "semiseg"}, "the module imports only the engine's torch-free contract"


@pytest.mark.parametrize("path", sorted(LIB.glob("*.py")), ids=lambda p: p.name)
def test_lib_is_qt_free(path):
    bad = [
        (m, line)
        for m, line in _imports(ast.parse(path.read_text()), fileScopeOnly=False)
        if not _allowed(m, LIB_ALLOWED | LIB_ALLOWED_IN.get(path.name, set()))
    ]
    assert not bad, (
        f"SemiSegSlicerLib may import only vtk, slicer (MRML), numpy, semiseg.contract and the standard library: {bad}"
    )


def _parameterFields():
    tree = ast.parse(MODULE_FILE.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SemiSegSlicerParameterNode")
    assert any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list)
    return {s.target.id: s for s in node.body if isinstance(s, ast.AnnAssign)}


def test_parameter_node_and_method_enum():
    fields = _parameterFields()
    assert {
        "inputVolume",
        "segmentation",
        "method",
        "iterations",
        "size",
        "device",
        "showConfidence",
        "confidenceOpacity",
    } <= set(fields)
    assert ast.unparse(fields["method"].value) == "Method(DEFAULT_METHOD)" and DEFAULT_METHOD in METHODS
    assert ast.unparse(fields["showConfidence"].annotation) == "bool"  # a real bool, not a string
    assert ast.literal_eval(fields["confidenceOpacity"].value) == 0.4
    # Keep largest island: the contract's words (the CLI's --keep-largest-island), "auto" by default
    assert ast.unparse(fields["keepLargestIsland"].annotation) == "Annotated[str, Choice(list(ISLAND_CHOICES))]"
    assert ast.literal_eval(fields["keepLargestIsland"].value) == "auto"
    tree = ast.parse(MODULE_FILE.read_text())  # the enum is made from the contract's catalogue, not a copy of it
    enum = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "Method")
    assert "METHOD_LABELS" in ast.unparse(enum.value)


def test_ui_has_every_widget_the_module_uses_and_binds_only_parameters():
    root = ET.parse(UI_FILE).getroot()
    widgets = {w.get("name"): w.get("class") for w in root.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    assert used <= set(widgets), f"widgets missing from the .ui: {sorted(used - set(widgets))}"
    bound = {p.find("string").text for p in root.iter("property") if p.get("name") == "SlicerParameterName"}
    assert bound <= set(_parameterFields())
    assert {
        "inputVolume",
        "segmentation",
        "method",
        "iterations",
        "device",
        "keepLargestIsland",
        "showConfidence",
        "confidenceOpacity",
    } <= bound
    classes = set(widgets.values())
    for needed in (
        "qMRMLNodeComboBox",
        "qMRMLCheckableNodeComboBox",
        "qMRMLSegmentEditorWidget",
        "ctkSliderWidget",
        "QProgressBar",
        "QTableWidget",
        "QComboBox",
        "QSpinBox",
        "QCheckBox",
    ):
        assert needed in classes
    declared = {c.find("class").text for c in root.iter("customwidget")}
    assert {c for c in classes if not c.startswith("Q")} <= declared
    for name in (
        "trainButton",
        "cancelButton",
        "retrainButton",
        "acceptSliceButton",
        "installDependenciesButton",
        "clearCacheButton",
        "statusLabel",
    ):
        assert name in widgets


def test_widget_is_thin():
    lines = MODULE_FILE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class SemiSegSlicerWidget"))
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith("class "))
    assert end - start <= 250


def test_module_has_a_test_case():
    tree = ast.parse(MODULE_FILE.read_text())
    test = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SemiSegSlicerTest")
    assert ast.unparse(test.bases[0]) == "ScriptedLoadableModuleTest"
    assert any(isinstance(f, ast.FunctionDef) and f.name == "runTest" for f in test.body)


@pytest.mark.parametrize(
    "path",
    [MODULE / "Resources" / "Icons" / "SemiSegSlicer.png", ROOT / "Resources" / "Icons" / "SemiSegSlicer.png"],
    ids=["module", "extension"],
)
def test_icons_are_128_px_png(path):
    with Image.open(path) as icon:
        assert icon.format == "PNG" and icon.size == (128, 128)


def test_requirements_have_no_torch():
    from packaging.requirements import Requirement

    lines = [
        line.split("#")[0].strip() for line in (MODULE / "Resources" / "requirements.txt").read_text().splitlines()
    ]
    requirements = [Requirement(line) for line in lines if line]
    names = {r.name.lower() for r in requirements}
    assert {"monai", "simpleitk", "numpy", "scipy"} <= names
    assert "torch" not in names
    assert "scikit-image" not in names, "nothing imports skimage: it must not be installed into Slicer"
    assert all(str(r.specifier) for r in requirements), "every requirement has a version range"


def test_no_dependency_that_nothing_imports():
    """scikit-image was installed into Slicer but imported nowhere: it is listed nowhere either."""
    import tomllib
    from packaging.requirements import Requirement

    sources = [p for folder in ("Logic", "SemiSegSlicer", "Web", "benchmarks") for p in (ROOT / folder).rglob("*.py")]
    imported = {m.split(".")[0] for p in sources for m, _ in _imports(ast.parse(p.read_text()), fileScopeOnly=False)}
    assert "skimage" not in imported
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "scikit-image" not in {Requirement(r).name for r in project["dependencies"]}
    tree = ast.parse((LIB / "dependencies.py").read_text())
    modules = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "ENGINE_MODULES")
    assert "skimage" not in ast.literal_eval(modules)


def test_catalog_entry_matches_the_cmakelists():
    entry = json.loads((ROOT / "Resources" / "SemiSegSlicer.json").read_text())
    assert set(entry) <= {
        "$schema",
        "build_dependencies",
        "build_subdirectory",
        "category",
        "scm_revision",
        "scm_type",
        "scm_url",
        "tier",
    }
    assert entry["category"] == "Segmentation" and entry["build_dependencies"] == ["PyTorch"]
    assert entry["scm_url"].startswith("https://") and entry["scm_revision"] and entry["tier"] in (1, 3, 5)


REPOSITORY = "SemiSegSlicer/SlicerSemiSeg"


def _ourUrls():
    """Every URL of CMakeLists.txt and of the catalog entry, with the file it is in."""
    urls = []
    for path in (ROOT / "CMakeLists.txt", ROOT / "Resources" / "SemiSegSlicer.json"):
        urls += [(path.name, url) for url in re.findall(r"https://[^\s\"')#]+", path.read_text())]
    return urls


def test_every_url_names_the_published_repository_and_an_existing_file():
    urls = _ourUrls()
    assert len(urls) >= 5
    for where, url in urls:
        if url.startswith("https://raw.githubusercontent.com/Slicer/Slicer/"):
            continue  # the catalog schema, in Slicer's repository
        match = re.fullmatch(
            r"https://(?:raw\.githubusercontent\.com/([^/]+/[^/]+)/[^/]+/(.+)|github\.com/([^/]+/[^/]+?)(?:\.git)?/?)",
            url,
        )
        assert match, f"{where}: {url} points neither to the repository nor to a file in it"
        assert (match.group(1) or match.group(3)) == REPOSITORY, f"{where}: {url} names another repository"
        if match.group(2):  # the Index downloads icons and screenshots: each must be in the repository
            assert (ROOT / match.group(2)).is_file(), f"{where}: {url} names a file missing from the repository"


def test_the_repository_name_follows_the_index_rule_and_the_readme_agrees():
    entry = json.loads((ROOT / "Resources" / "SemiSegSlicer.json").read_text())
    assert entry["scm_url"] == f"https://github.com/{REPOSITORY}.git"
    assert REPOSITORY.split("/")[1].startswith("Slicer")
    readme = (ROOT / "README.md").read_text()
    assert f"https://github.com/{REPOSITORY}" in readme and "*SemiSegSlicer*" in readme
