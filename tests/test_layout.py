"""The package's shape stays as the README's Layout section draws it.

Imports are read from the source (ast), so what is checked is every import a module can run,
including the ones inside functions and under `if TYPE_CHECKING:`: a cycle hidden in a function
is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "digitrec"
MAX_LINES = 400
# Imports may only point down this list (a subpackage may import from those after it, and from
# itself). The top-level helpers (errors, atomic, probability, device, weights) sit at the bottom.
LAYERS = ["cli", "commands", "server", "making", "evaluation", "reading", "runtime", "training", "models"]
BOTTOM = {"digitrec", "errors", "atomic", "probability", "device", "weights", "__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules `path` imports (`from digitrec.x import y` counts as digitrec.x.y when
    that is a module, else digitrec.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "digitrec")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "digitrec":
                continue
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return found & known


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, set(known)) - {name} for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def rank(module: str) -> int:
    """Position in LAYERS (0 is the top); the top-level helpers rank below every subpackage."""
    parts = module.split(".")
    here = parts[1] if len(parts) > 1 else "digitrec"
    return LAYERS.index(here) if here in LAYERS else len(LAYERS)


def test_no_import_cycles_between_modules() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in graph().items()
        for target in targets
        if rank(target) < rank(module) and module not in ("digitrec.__main__",)
    ]
    assert not upward, "imports that run up the layers: " + ", ".join(sorted(upward))


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_are_small(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES}): split it by what it does"


def test_every_module_is_in_a_layer() -> None:
    tops = {name.split(".")[1] for name in modules() if "." in name}
    assert tops <= set(LAYERS) | BOTTOM, (
        f"modules in no layer (add them to LAYERS or BOTTOM): {tops - set(LAYERS) - BOTTOM}"
    )


def test_public_names_import_from_the_package_face() -> None:
    import digitrec
    from digitrec.models import create_model
    from digitrec.reading.recognize import Recognizer
    from digitrec.server import create_app

    assert digitrec.Recognizer is Recognizer
    assert digitrec.create_app is create_app
    assert digitrec.create_model is create_model
    with pytest.raises(AttributeError):
        digitrec.no_such_name  # noqa: B018
