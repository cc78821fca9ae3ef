"""The package's structure (docs/architecture.md): subpackages in layers whose imports point
down, no import cycles, imports inside functions only for optional or heavy packages, and only
training's callers import the training package."""

from __future__ import annotations

import ast
from pathlib import Path

import ccyclegan

PACKAGE = Path(ccyclegan.__file__).parent
# "pkg.mod" (or "pkg" for its __init__, or the top-level module's own name) -> file
MODULES = {".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): p
           for p in PACKAGE.rglob("*.py")}
# bottom to top: a module imports its own subpackage and the layers below it, nothing else;
# train and translate share a layer and import neither each other
LAYERS = {"core": 0, "classifier": 1, "train": 2, "translate": 2, "evaluate": 3, "cli": 4}
# what may be imported inside a function: optional extras, and heavy paths few calls need
LAZY_OK = ("onnxruntime", "torch._inductor", "torch.utils.tensorboard", "starlette", "uvicorn",
           "python_multipart", "multipart", "dlib", "cv2", "importlib")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function?) for every import statement of a file."""
    found: list[tuple[str, bool]] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                for a in child.names:  # from ccyclegan.core import losses: the submodule
                    sub = f"{child.module}.{a.name}"
                    is_module = sub.removeprefix("ccyclegan.") in MODULES
                    found.append((sub if is_module else child.module, in_function))
            walk(child, inner)

    walk(ast.parse(path.read_text()), False)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        for module, _ in _imports(path):
            target = module.removeprefix("ccyclegan.")
            if module.startswith("ccyclegan.") and target in MODULES and target != name:
                graph.setdefault(name, set()).add(target)
    return graph


def test_subpackages_import_only_their_own_and_the_layers_below():
    wrong = []
    for name, deps in _graph().items():
        pkg = name.split(".")[0]
        if pkg not in LAYERS:  # __init__ / __main__ of the package itself
            continue
        for dep in deps:
            other = dep.split(".")[0]
            if other != pkg and LAYERS.get(other, -1) >= LAYERS[pkg]:
                wrong.append(f"{name} imports {dep}")
    assert wrong == []
    assert set(LAYERS) == {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}


def test_no_module_over_500_lines_and_no_function_over_80():
    long_modules = [n for n, p in MODULES.items() if len(p.read_text().splitlines()) > 500]
    long_functions = [
        f"{n}.{f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for n, p in MODULES.items() for f in ast.walk(ast.parse(p.read_text()))
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        and f.end_lineno - f.lineno + 1 > 80]
    assert long_modules == []
    assert long_functions == []


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):]
                                                                   + [nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])


def test_imports_inside_functions_are_only_optional_or_heavy_packages():
    lazy = [(name, module) for name, path in MODULES.items()
            for module, inside in _imports(path)
            if inside and not module.startswith(LAZY_OK)]
    assert lazy == []


def test_only_training_callers_import_the_training_package():
    users = sorted(name for name, deps in _graph().items()
                   if name.split(".")[0] != "train" and any(d.startswith("train") for d in deps))
    # `ccyclegan train`, and a sweep trains each setting
    assert users == ["cli.commands", "evaluate.sweep"]
