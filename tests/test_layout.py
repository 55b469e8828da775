"""The package by stage: every stage imports, the core never imports Prefect or the shell."""

from __future__ import annotations

import ast
import importlib
import shutil
from pathlib import Path

import layout_rules
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


# --- the shell's rules (tests/layout_rules.py) ---------------------------------------------------

REPO = CORE.parent
# Core modules of issue I's stages (milkprice/model, pipeline) already over the limit; they are
# split there. Nothing else may grow past it.
LONG_CORE = frozenset(
    {
        "milkprice/model/features.py",
        "milkprice/model/forecast.py",
        "milkprice/pipeline/training_run.py",
    }
)


def test_no_import_circle_anywhere() -> None:
    graph = layout_rules.import_graph(REPO)
    assert {"orchestration.serve", "stack.control", "milkprice_cli.app"} <= set(graph)
    assert layout_rules.circles(graph) == []


def test_stack_never_imports_orchestration_and_nothing_imports_the_cli() -> None:
    assert layout_rules.forbidden_imports(layout_rules.import_graph(REPO)) == []


def test_no_module_over_400_lines() -> None:
    assert layout_rules.long_modules(REPO, LONG_CORE) == []


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """A throwaway copy of the four packages, to break on purpose."""
    for package in layout_rules.PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package)
    assert layout_rules.circles(layout_rules.import_graph(tmp_path)) == []
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n\ndef _throwaway() -> None:\n    {line}\n")


def test_rules_fail_on_an_added_circle(tree_copy: Path) -> None:
    # prefect_server is imported by serve: importing serve back closes a circle.
    _append(tree_copy / "orchestration/prefect_server.py", "import orchestration.serve")
    found = layout_rules.circles(layout_rules.import_graph(tree_copy))
    assert any({"orchestration.prefect_server", "orchestration.serve"} <= set(g) for g in found)


def test_rules_fail_when_stack_imports_orchestration_or_the_cli_is_imported(
    tree_copy: Path,
) -> None:
    _append(tree_copy / "stack/ready.py", "from orchestration import pool")
    _append(tree_copy / "orchestration/pool.py", "from milkprice_cli.data import fail")
    bad = layout_rules.forbidden_imports(layout_rules.import_graph(tree_copy))
    assert any(b.startswith("stack.ready imports orchestration.pool") for b in bad)
    assert any(b.startswith("orchestration.pool imports milkprice_cli.data") for b in bad)


def test_rules_fail_on_a_long_module(tree_copy: Path) -> None:
    (tree_copy / "stack/long.py").write_text("x = 1\n" * 401)
    assert layout_rules.long_modules(tree_copy, LONG_CORE) == ["stack/long.py: 401 lines"]


def test_imports_in_a_main_block_do_not_count(tree_copy: Path) -> None:
    path = tree_copy / "orchestration/prefect_server.py"
    path.write_text(
        path.read_text() + '\n\nif __name__ == "__main__":\n    import orchestration.serve\n'
    )
    assert layout_rules.circles(layout_rules.import_graph(tree_copy)) == []


def test_names_typed_once_where_stack_cannot_import_them() -> None:
    # stack/ never imports orchestration/, so it repeats two deployment names once (the one it
    # waits for, the one it starts a run of): this holds the copies to the one definition.
    from orchestration.names import INGEST_DEPLOYMENT, TRAIN_DEPLOYMENT
    from stack import local

    assert local._SERVE_DEPLOYMENT == TRAIN_DEPLOYMENT
    assert local._INGEST_DEPLOYMENT == INGEST_DEPLOYMENT
