"""The package's structure (docs/architecture.md): no import cycles, imports inside functions
only for optional or heavy packages, and only training's callers import the training module."""

from __future__ import annotations

import ast
from pathlib import Path

import ccyclegan

PACKAGE = Path(ccyclegan.__file__).parent
MODULES = {p.stem: p for p in PACKAGE.glob("*.py")}
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
                if child.module == "ccyclegan":  # from ccyclegan import losses
                    found.extend((f"ccyclegan.{a.name}", in_function) for a in child.names)
                else:
                    found.append((child.module, in_function))
            walk(child, inner)

    walk(ast.parse(path.read_text()), False)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        for module, _ in _imports(path):
            parts = module.split(".")
            if parts[0] == "ccyclegan" and len(parts) > 1 and parts[1] in MODULES:
                graph.setdefault(name, set()).add(parts[1])
    return graph


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


def test_only_training_callers_import_the_training_module():
    users = sorted(name for name, deps in _graph().items() if "train" in deps)
    assert users == ["cli", "sweep"]  # `ccyclegan train`, and a sweep trains each setting
