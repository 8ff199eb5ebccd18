"""The dependency arrows point one way: every import in the tree (lazy ones inside functions included) is read
with `ast` and checked against the layers below. A new back-arrow fails here with the file, line and rule, and a
loop of imports between library modules (inside one layer too) fails with the modules round the loop.

Layers, bottom to top (a layer may import itself and the layers listed for it, nothing above):

    edge_runtime   numpy/opencv runtime, shared rules, statistics       imports none of ours; never torch
    calibration    calibration sets, INT8/FP16 models, accuracy gates   edge_runtime; never torch
    slsg           network, data, training, evaluation (not its CLI)   edge_runtime
    export         PyTorch → ONNX, bundles                             slsg, calibration, edge_runtime
    benchmarks     latency and accuracy harnesses                      all of the above
    CLI layer      slsg/cli.py, slsg/commands/, slsg/demo.py           everything
                   edge_runtime/cli.py, edge_runtime/commands/         edge_runtime only; never torch

Tests (`<package>/tests/`) are leaves: no library module imports them, and they may import what they need to
build real fixtures (a torch model for calibration's tests, the `slsg` CLI for export's), except the runtime's
own tests, which stay inside edge_runtime and torch-free so they run on a device that has only the runtime.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("edge_runtime", "calibration", "slsg", "export", "benchmarks")

SLSG_CLI = ("slsg.cli", "slsg.commands", "slsg.demo", "slsg.__main__")
EDGE_CLI = ("edge_runtime.cli", "edge_runtime.commands", "edge_runtime.__main__")

#: layer → the layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "edge_runtime": set(),
    "calibration": {"edge_runtime"},
    "slsg": {"edge_runtime"},
    "export": {"slsg", "calibration", "edge_runtime"},
    "benchmarks": {"export", "slsg", "calibration", "edge_runtime"},
    "edge-cli": {"edge_runtime"},
    "slsg-cli": {"edge-cli", "benchmarks", "export", "slsg", "calibration", "edge_runtime"},
}
#: layers that must import without torch (the Jetson runtime, and calibration, which runs on any CPU)
TORCH_FREE = {"edge_runtime", "calibration", "edge-cli"}
TORCH = ("torch", "torchvision")

#: (importing package prefix, imported module) pairs allowed for now, each with the reason and when it goes.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
    # none today. (Until the TensorRT branch merged, edge_runtime/tensorrt imported calibration.legacy; the legacy
    # calibrator now lives in edge_runtime/tensorrt/calibrator.py.) An entry here must name who removes it, when.
}


def _is_under(module: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def is_test_module(module: str) -> bool:
    return ".tests." in module + "." or module.endswith(".conftest")


#: The runtime's test support (a tiny bundle, videos, mosquitto and a Modbus server on loopback): beside its tests,
#: out of the runtime proper; the benchmarks that run the runtime for hours (soak, overhead) use it too.
TEST_SUPPORT = ("edge_runtime.tests.support", "edge_runtime.tests.loopback")


def layer_of(module: str) -> str:
    """The layer a module of ours belongs to (tests are judged by their package's rule, see module docstring)."""
    if _is_under(module, SLSG_CLI):
        return "slsg-cli"
    if _is_under(module, EDGE_CLI):
        return "edge-cli"
    return module.split(".")[0]


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    source: str  # the importing module, dotted
    target: str  # what it imports, dotted (a module of ours, or a third-party top-level name)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def our_modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))
            if "__pycache__" not in p.parts}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of string constants that are statements (docstrings, bare strings): they mention, not import."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}


def imports_of(path: Path, module: str, known: set[str]) -> list[Import]:
    """Every import in the file: `import`/`from` statements at any depth (lazy ones in functions too), relative
    ones resolved, `importlib.import_module("…")`/`__import__("…")` with a literal, and any other string literal
    that names one of our submodules exactly (the CLIs' lazy command tables, error-class tables); a bare package
    name in a string ("slsg", "calibration") is a word, not an import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    statements = _docstring_nodes(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            found.append((node.lineno, base_name))
            # `from pkg import sub` imports the module pkg.sub when there is one
            found.extend((node.lineno, f"{base_name}.{a.name}") for a in node.names if f"{base_name}.{a.name}" in known)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in statements
              and "." in node.value and node.value in known):
            found.append((node.lineno, node.value))
    return [Import(path, line, module, target) for line, target in found if target]


def violation(imp: Import) -> str | None:
    """Why this import breaks the arrows, or None."""
    top = imp.target.split(".")[0]
    src_layer = layer_of(imp.source)
    where = f"{imp.path.relative_to(ROOT) if imp.path.is_relative_to(ROOT) else imp.path}:{imp.line}"
    if top in TORCH:
        if src_layer in TORCH_FREE and not (is_test_module(imp.source) and src_layer != "edge_runtime"):
            return f"{where}: {imp.source} imports {imp.target}, but {src_layer} must never import torch"
        return None
    if top not in PACKAGES:
        return None
    dst_layer = layer_of(imp.target)
    if is_test_module(imp.target) and not is_test_module(imp.source):
        if src_layer == "benchmarks" and _is_under(imp.target, TEST_SUPPORT):
            return None
        return f"{where}: {imp.source} imports the test module {imp.target}"
    if is_test_module(imp.source):
        if src_layer == "edge_runtime" and dst_layer not in ("edge_runtime", "edge-cli"):
            return (f"{where}: {imp.source} imports {imp.target}; the runtime's tests must run where only "
                    "edge_runtime is installed")
        return None
    if dst_layer == src_layer or dst_layer in ALLOWED[src_layer]:
        return None
    return f"{where}: {imp.source} ({src_layer}) imports {imp.target} ({dst_layer}), which sits above it"


def _excepted(imp: Import) -> tuple[str, str] | None:
    for key in KNOWN_EXCEPTIONS:
        prefix, target = key
        if _is_under(imp.source, prefix) and _is_under(imp.target, target):
            return key
    return None


def all_imports(root: Path = ROOT) -> list[Import]:
    modules = our_modules(root)
    known = set(modules)
    return [imp for mod, path in modules.items() for imp in imports_of(path, mod, known)]


def test_no_module_imports_a_layer_above_it():
    problems, used = [], set()
    for imp in all_imports():
        why = violation(imp)
        if why is None:
            continue
        key = _excepted(imp)
        if key is not None:
            used.add(key)
        else:
            problems.append(why)
    assert not problems, "imports against the dependency arrows:\n" + "\n".join(problems)
    stale = set(KNOWN_EXCEPTIONS) - used
    assert not stale, f"these known exceptions are no longer needed, delete them from KNOWN_EXCEPTIONS: {stale}"


def test_every_module_of_ours_has_a_layer_with_rules():
    layers = {layer_of(m) for m in our_modules(ROOT)}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)
    assert layer_of("slsg.commands.train") == "slsg-cli" and layer_of("slsg.demo") == "slsg-cli"
    assert layer_of("edge_runtime.commands.bench") == "edge-cli" and layer_of("edge_runtime.bench") == "edge_runtime"
    assert layer_of("slsg.training.loop") == "slsg"


# ---- the checker itself: it must see each way of importing, or the test above proves nothing ----

@pytest.fixture()
def fake_tree(tmp_path: Path):
    def write(files: dict[str, str]) -> list[str]:
        for rel, text in files.items():
            p = tmp_path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        for pkg in PACKAGES:
            (tmp_path / pkg).mkdir(exist_ok=True)
            (tmp_path / pkg / "__init__.py").touch()
        modules = our_modules(tmp_path)
        imps = [i for m, p in modules.items() for i in imports_of(p, m, set(modules))]
        return sorted({(i.source, i.target) for i in imps if violation(i)})

    return write


def test_checker_catches_lazy_relative_and_string_imports(fake_tree):
    bad = fake_tree({
        "edge_runtime/tensorrt/__init__.py": "",
        "edge_runtime/tensorrt/engine.py": "def build():\n    from ...calibration import legacy\n",
        "calibration/legacy.py": "",
        "calibration/gate.py": "def f():\n    import torch\n",
        "slsg/errors.py": "import importlib\nimportlib.import_module('export.onnx_export')\n",
        "slsg/table.py": "KNOWN = [('calibration.selection', 'CalibrationError')]\n",
        "slsg/ok.py": '"""mentions export.onnx_export in prose only"""\nfrom edge_runtime import scoring\n',
        "export/onnx_export.py": "from slsg import ok\n",
        "calibration/selection.py": "",
        "edge_runtime/scoring.py": "",
        "edge_runtime/commands/__init__.py": "",
        "edge_runtime/commands/run.py": "import slsg.ok\n",
        "benchmarks/bench.py": "from edge_runtime.commands import run\n",
        "slsg/commands/__init__.py": "",
        "slsg/commands/export.py": "from export import onnx_export\nfrom benchmarks import bench\n",
        "edge_runtime/tests/__init__.py": "",
        "edge_runtime/tests/test_x.py": "import torch\n",
        "calibration/tests/__init__.py": "",
        "calibration/tests/tiny.py": "import torch\n",
    })
    assert bad == sorted([
        ("benchmarks.bench", "edge_runtime.commands"),
        ("benchmarks.bench", "edge_runtime.commands.run"),
        ("calibration.gate", "torch"),
        ("edge_runtime.commands.run", "slsg.ok"),
        ("edge_runtime.tensorrt.engine", "calibration"),
        ("edge_runtime.tensorrt.engine", "calibration.legacy"),
        ("edge_runtime.tests.test_x", "torch"),
        ("slsg.errors", "export.onnx_export"),
        ("slsg.table", "calibration.selection"),
    ])


# ---- circles: arrows that stay inside one layer can still loop; a loop makes both ends one module in disguise ----

def import_graph(imports: list[Import], modules: set[str]) -> dict[str, set[str]]:
    """module → the modules of ours it imports (library modules only; a name inside a module counts as the module)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if is_test_module(imp.source):
            continue
        target = imp.target
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != imp.source and not is_test_module(target):
            graph.setdefault(imp.source, set()).add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative: the tree is deep enough to matter)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_import_circles():
    graph = import_graph(all_imports(), set(our_modules(ROOT)))
    loops = circles(graph)
    assert not loops, "import circles (each group imports itself round the loop):\n" + "\n".join(map(str, loops))


def test_circle_checker_sees_a_loop_through_a_lazy_import(tmp_path: Path):
    for rel, text in {
        "edge_runtime/__init__.py": "",
        "edge_runtime/backends/__init__.py": "from edge_runtime.backends.probe import pick\n",
        "edge_runtime/backends/probe.py": "def pick():\n    from edge_runtime.bench import frame\n",
        "edge_runtime/bench.py": "from edge_runtime.backends import pick\nframe = 1\n",
        "edge_runtime/preprocess.py": "from edge_runtime import backends\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    modules = {module_name(p, tmp_path): p for p in tmp_path.rglob("*.py")}
    imports = [i for m, p in modules.items() for i in imports_of(p, m, set(modules))]
    assert circles(import_graph(imports, set(modules))) == [
        ["edge_runtime.backends", "edge_runtime.backends.probe", "edge_runtime.bench"]
    ]
