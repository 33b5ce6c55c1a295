"""Layers only point down: vfr → eval → retrieve/describe → store (DESIGN.md). Checked on the source:
every import statement, including those inside functions."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"store": "vfr.store", "retrieve": "vfr.retrieve", "describe": "vfr.describe", "eval": "vfr.eval",
            "vfr": "vfr"}
# what each layer may import from this project (besides itself)
ALLOWED = {
    "store": {"vfr.store"},
    "retrieve": {"vfr.retrieve", "vfr.store"},
    "describe": {"vfr.describe", "vfr.store"},
    "eval": {"vfr.eval", "vfr.retrieve", "vfr.describe", "vfr.store"},
}
LAYER_PACKAGES = ("vfr.store", "vfr.retrieve", "vfr.describe", "vfr.eval")


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def project_target(module: str) -> str | None:
    """The project package an import reaches (vfr.store, …, or 'vfr' for the top layer), else None."""
    if module == "vfr" or module.startswith("vfr."):
        for pkg in LAYER_PACKAGES:
            if module == pkg or module.startswith(pkg + "."):
                return pkg
        return "vfr"
    return None


@pytest.mark.parametrize("folder", list(PACKAGES))
def test_no_generic_top_level_names(folder):
    bad = [f"{p.relative_to(REPO)}:{n}: import {m}" for p in (REPO / folder).rglob("*.py")
           for n, m in imports(p) if m.split(".")[0] in ("store", "retrieve", "describe", "eval")]
    assert not bad, "import the installed namespace (vfr.store, …), not the folder:\n" + "\n".join(bad)


@pytest.mark.parametrize("folder", list(ALLOWED))
def test_layers_point_down(folder):
    bad = []
    for path in (REPO / folder).rglob("*.py"):
        for lineno, module in imports(path):
            target = project_target(module)
            if target is not None and target not in ALLOWED[folder]:
                bad.append(f"{path.relative_to(REPO)}:{lineno}: {folder}/ imports {module}")
    assert not bad, "\n".join(bad)


def test_sql_only_in_store():
    """DuckDB is used by store/ alone (SQL lives there)."""
    bad = [f"{p.relative_to(REPO)}:{n}" for folder in ("retrieve", "describe", "eval", "vfr")
           for p in (REPO / folder).rglob("*.py") for n, m in imports(p) if m.split(".")[0] == "duckdb"]
    assert not bad, "\n".join(bad)
