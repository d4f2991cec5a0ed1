"""The package's imports flow one way: no import cycle, and no import from a lower layer to a higher one.

Every ``import`` of the package is read with ``ast`` (module level and inside functions alike: a lazy import is
still a dependency). Layers, low to high:

0. shared helpers: ``training/`` and the top-level helper modules (errors, files, paths, references, ...);
1. the model folders ``vision/`` and ``multimodal/``, and ``data/`` (image-classification data): none of the
   three imports another;
2. ``quickstart/`` (imports the model folders; only the command line, the fit-config reader and the emergence
   quickstart import it);
3. ``fit_config`` (the one fit-config parser), ``sweeps/`` and ``predictions`` (commands over any model);
4. the command line (``cli``, ``entry``, ``__main__``) and ``emergence`` (chains ``lit-mm`` commands).

Alias modules (an old import path kept for configs and code written against it) only re-export their new home;
they are checked to do nothing else and left out of the graph.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = "lit_multimodal"

# Top-level modules and folders of the package -> layer. A new one must be placed here.
LAYERS = {
    PACKAGE: 0,
    "training": 0,
    "errors": 0,
    "files": 0,
    "paths": 0,
    "progress": 0,
    "references": 0,
    "runtime": 0,
    "file_kind": 0,
    "help_format": 0,
    "config_errors": 0,
    "testing": 0,
    "data": 1,
    "vision": 1,
    "multimodal": 1,
    "command_table": 0,
    "quickstart": 2,
    "sweeps": 3,
    "predictions": 3,
    "fit_config": 3,
    "cli": 4,
    "entry": 4,
    "__main__": 4,
    "emergence": 4,
}
PEERS_APART = {"data", "vision", "multimodal"}  # same layer, but none may import another

# Old path -> new home. Each alias module holds nothing but imports from its new home.
ALIASES = {
    "lit_multimodal.data.instructions": "lit_multimodal.multimodal.pandagpt.instructions",
    "lit_multimodal.data.digits": "lit_multimodal.quickstart.digits",
    "lit_multimodal.vision.quickstart_backbone": "lit_multimodal.quickstart.backbone",
    "lit_multimodal.multimodal.pandagpt.quickstart": "lit_multimodal.quickstart.pandagpt",
    "lit_multimodal.multimodal.pandagpt.tiny": "lit_multimodal.quickstart.tiny_llm",
}
ALIAS_EXTRA_SOURCES = {"lit_multimodal.multimodal.pandagpt.quickstart": {"lit_multimodal.quickstart.references"}}

# The one import that runs uphill, and why.
ALLOWED_UPHILL = {
    ("lit_multimodal.multimodal.pandagpt.export", "lit_multimodal.fit_config"): (
        "the PandaGPT commands (chat, demo, serve, export, evaluate) live next to the model and must build exactly "
        "the model fit trained: read_model_config/build_pandagpt, the one place all of them pass, read --config "
        "files and overrides with the fit parser and resolve quickstart: references (function-level imports)"
    ),
}


# Cycles inside one folder that exist only through an import inside a function (Python imports them in order);
# each should go when its folder is next reworked. Module-level cycles are never allowed.
LAZY_CYCLES_WITHIN_A_FOLDER = [
    {"vision.classifier", "vision.tuning", "vision.methods", "vision.methods.base"},  # base builds a ViTClassifier
    {"multimodal.pandagpt.batch", "multimodal.pandagpt.chat"},  # chat runs a batch file
    {"multimodal.pandagpt.conversation", "multimodal.pandagpt.styles"},  # vicuna_v0 reuses the official text
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The package module that ``import name`` loads last: ``name`` itself or its nearest parent."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, lazy: bool = True) -> set[str]:
    """The package modules ``module`` imports: anywhere in its source, or (``lazy=False``) when it is imported."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    in_functions = {id(inner) for f in functions for inner in ast.walk(f)}
    for node in ast.walk(tree):
        if not lazy and id(node) in in_functions:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # "from package import submodule" imports the submodule
            names = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        else:
            continue
        targets |= {owner for name in names if name.startswith(PACKAGE) and (owner := _owner(name))}
    targets.discard(module)
    return targets


def _graph(lazy: bool = True) -> dict[str, set[str]]:
    return {module: _imports(module, lazy) for module in MODULES if module not in ALIASES}


def _top(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def _layer(module: str) -> tuple[str, int]:
    top = _top(module)
    if top not in LAYERS:
        pytest.fail(f"{module}: place {top!r} in a layer of tests/test_architecture.py LAYERS")
    return top, LAYERS[top]


def _uphill(source: str, target: str) -> bool:
    (source_top, source_layer), (target_top, target_layer) = _layer(source), _layer(target)
    if source_top == target_top:
        return False
    if source_top in PEERS_APART and target_top in PEERS_APART:
        return True
    return target_layer > source_layer


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_imports_do_not_run_uphill():
    uphill = {(s, t) for s, targets in _graph().items() for t in targets if _uphill(s, t)}
    unexpected = sorted(uphill - set(ALLOWED_UPHILL))
    assert not unexpected, "imports from a lower layer to a higher one (or between data/vision/multimodal):\n" + (
        "\n".join(f"  {s} -> {t}" for s, t in unexpected)
    )
    assert len(ALLOWED_UPHILL) <= 1
    gone = sorted(set(ALLOWED_UPHILL) - uphill)
    assert not gone, f"no longer imported, remove from ALLOWED_UPHILL: {gone}"


def test_no_import_cycle_at_module_level():
    assert _cycles(_graph(lazy=False)) == []


def test_folders_import_each_other_one_way():
    folders: dict[str, set[str]] = defaultdict(set)
    for source, targets in _graph().items():
        # the allowed uphill import closes a loop by definition; it is checked (and limited to one) above
        kept = {t for t in targets if (source, t) not in ALLOWED_UPHILL}
        folders[_top(source)] |= {_top(t) for t in kept} - {_top(source)}
    cycles = _cycles(folders)
    assert not cycles, f"folders that import each other: {[sorted(c) for c in cycles]}"


def test_cycles_inside_a_folder_are_the_known_lazy_ones():
    cycles = [{m.removeprefix(f"{PACKAGE}.") for m in c} for c in _cycles(_graph())]
    cross = [sorted(c) for c in cycles if len({_top(f"{PACKAGE}.{m}") for m in c}) > 1]
    inside = [c for c in cycles if len({_top(f"{PACKAGE}.{m}") for m in c}) == 1]
    unknown = [sorted(c) for c in inside if not any(known <= c for known in LAZY_CYCLES_WITHIN_A_FOLDER)]
    assert not unknown, f"new import cycles: {unknown}"
    gone = [sorted(k) for k in LAZY_CYCLES_WITHIN_A_FOLDER if not any(k <= c for c in inside)]
    assert not gone, f"cycles that no longer exist, remove them from LAZY_CYCLES_WITHIN_A_FOLDER: {gone}"
    assert not cross, f"import cycles across folders: {cross}"


def test_only_the_command_line_imports_the_quickstart():
    importers = {
        s
        for s, targets in _graph().items()
        for t in targets
        if t.startswith(f"{PACKAGE}.quickstart") and not s.startswith(f"{PACKAGE}.quickstart")
    }
    assert importers <= {
        f"{PACKAGE}.cli",
        f"{PACKAGE}.fit_config",
        f"{PACKAGE}.emergence",
        *(s for s, t in ALLOWED_UPHILL if t.startswith(f"{PACKAGE}.quickstart")),
    }


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_modules_only_re_export_their_new_home(alias):
    home = ALIASES[alias]
    tree = ast.parse(MODULES[alias].read_text())
    sources = {home, *ALIAS_EXTRA_SOURCES.get(alias, ())}
    for statement in tree.body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # the docstring
        if isinstance(statement, ast.Assign) and [getattr(t, "id", None) for t in statement.targets] == ["__all__"]:
            continue
        assert isinstance(statement, ast.ImportFrom) and statement.module in sources, ast.dump(statement)[:200]
    old, new = importlib.import_module(alias), importlib.import_module(home)
    exported = [a.name for s in tree.body if isinstance(s, ast.ImportFrom) and s.module == home for a in s.names]
    assert exported and all(getattr(old, name) is getattr(new, name) for name in exported)


def test_the_graph_reader_sees_lazy_and_relative_imports():
    graph = _graph()
    # function-level: vision/module.py imports the loader helpers inside extract_features
    assert "lit_multimodal.training.loaders" in graph["lit_multimodal.vision.module"]
    # relative: "from .answers import ..." in pandagpt/evaluate.py
    assert "lit_multimodal.multimodal.pandagpt.answers" in graph["lit_multimodal.multimodal.pandagpt.evaluate"]
    assert _uphill("lit_multimodal.data.base", "lit_multimodal.vision.module")
    assert _uphill("lit_multimodal.vision.module", "lit_multimodal.multimodal.pandagpt.module")
    assert not _uphill("lit_multimodal.quickstart.backbone", "lit_multimodal.vision.backbones")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_old_class_paths_still_resolve():
    from lit_multimodal.quickstart import QuickstartDigits
    from lit_multimodal.quickstart.pandagpt import EpochLossPrinter

    assert importlib.import_module("lit_multimodal.data").QuickstartDigits is QuickstartDigits
    assert importlib.import_module("lit_multimodal.multimodal.pandagpt.quickstart").EpochLossPrinter is EpochLossPrinter
