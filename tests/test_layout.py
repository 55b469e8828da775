"""The package by stage: every stage imports, the core never imports Prefect or the shell."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "milkprice"
STAGES = ("data", "model", "registry", "serving", "monitoring", "pipeline")
# Data flows one way: a stage may import its own and the stages listed before it.
ORDER = {stage: i for i, stage in enumerate(STAGES)}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


MODULES = sorted(CORE.rglob("*.py"))
# settings, months, plots and cli sit at the top, shared by all stages.
STAGE_MODULES = [p for p in MODULES if p.relative_to(CORE).parts[0] in ORDER]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_no_prefect_and_no_shell(path: Path) -> None:
    bad = {name for name in _imports(path) if name.split(".")[0] in {"prefect", "orchestration"}}
    assert not bad, f"{path.relative_to(CORE.parent)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", STAGE_MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_stages_import_only_their_own_or_lower_stages(path: Path) -> None:
    parts = path.relative_to(CORE).parts
    own = ORDER[parts[0]]
    later = [
        name
        for name in _imports(path)
        if name.startswith("milkprice.") and ORDER.get(name.split(".")[1], -1) > own
    ]
    assert not later, f"{'/'.join(parts)} imports a later stage: {later}"


@pytest.mark.parametrize(
    "module",
    [
        "milkprice.data.lake",
        "milkprice.model.intervals",
        "milkprice.registry.promotion",
        "milkprice.serving.predictor",
        "milkprice.pipeline.training_run",
    ],
)
def test_each_stage_imports_on_its_own(module: str) -> None:
    assert importlib.import_module(module).__all__
