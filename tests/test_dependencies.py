"""Every package the code imports is installed by `pip install jingzhun`, not only by the dev extras.

A module imported by `src/` but provided only by a dev dependency (or by nothing declared)
works in the developers' venv and fails on a user's machine or in a fresh CI venv: stop 14's
CI failed at collection on `pydantic_settings`, and webhook deliveries imported `httpx`,
which only the dev extras installed.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = {"pyspark": "spark"}  # imported lazily behind an install hint (engine/spark.py)


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _base_closure() -> set[str]:
    """The distributions a base install brings: the declared dependencies and theirs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    todo, seen = [_name(r) for r in project["dependencies"]], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_name(r) for r in requires if "extra ==" not in r)
    return seen


def _imported_modules() -> dict[str, str]:
    """Top-level modules imported anywhere in src/jingzhun, with one file importing each."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "src" / "jingzhun").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_module_the_code_imports_comes_with_a_base_install() -> None:
    base = _base_closure()
    providers = metadata.packages_distributions()
    missing = []
    for module, where in _imported_modules().items():
        if module in sys.stdlib_module_names or module in {"jingzhun", "__future__"} or module in OPTIONAL:
            continue
        dists = {name.lower().replace("_", "-") for name in providers.get(module, [])}
        if not dists & base:
            missing.append(f"{module} (imported by {where}; installed by {sorted(dists) or 'nothing'})")
    assert not missing, "declare these in [project] dependencies of pyproject.toml: " + "; ".join(missing)


def test_the_check_sees_a_dev_only_package() -> None:
    """The closure really excludes the dev extras: pytest is installed here but not by a base install."""
    assert "pytest" not in _base_closure() and "duckdb" in _base_closure()
