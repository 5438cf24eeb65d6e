"""The house's plan: rooms (packages), floors (layers), import arrows, circles and arrows back up.

    python benchmarks/layout.py            # the report (markdown)
    python benchmarks/layout.py --check    # exit 1 if there is a circle or an arrow back up

Every `import` and `from ... import` of ours counts, at module level or inside a function (a
lazy import is still a dependency), except those under `if TYPE_CHECKING:`. A room is a package
below `signlang_jax/` (or `interop/`); the modules at the top of `signlang_jax/` are the shared
vocabulary or the command entry points. `FLOORS` orders the rooms bottom-up: a module may import
its own floor's rooms or lower ones, never a higher floor.
`tests/test_readme.py::test_layers_hold` runs the check.
"""

from __future__ import annotations

import argparse
import ast
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("signlang_jax", "interop")

# Bottom-up. A room is named by a module prefix; the longest matching prefix wins.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("vocabulary", ("signlang_jax.keypoints", "signlang_jax.keypoint_maps", "signlang_jax.codec",
                    "signlang_jax.crop", "signlang_jax.draw", "signlang_jax.errors",
                    "signlang_jax.files", "signlang_jax.parallel", "signlang_jax.dark",
                    "signlang_jax")),
    ("models, generator", ("signlang_jax.models", "signlang_jax.synth", "interop.torch_model",
                           "interop.convert")),
    ("data", ("signlang_jax.data",)),
    ("evaluation", ("signlang_jax.evaluation",)),
    ("training", ("signlang_jax.training",)),
    ("inference", ("signlang_jax.inference",)),
    ("video", ("signlang_jax.video",)),
    ("commands", ("signlang_jax.main", "signlang_jax.evaluate", "signlang_jax.infer_image",
                  "signlang_jax.live_demo", "signlang_jax.demo_report",
                  "signlang_jax.video.__main__", "signlang_jax.synth.__main__", "interop")),
]


def module_files() -> dict[str, Path]:
    """Every module of ours by dotted name (a package by its own name, from `__init__.py`)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names this module imports (`from a import b` gives `a.b` and `a`)."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of ours it imports (resolved to the longest known module name)."""
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = set()
        for name in _imported_names(tree, module, path.name == "__init__.py"):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        # `from signlang_jax.data import x` also names the package; keep the package only when
        # nothing deeper was imported from it.
        graph[module] = {t for t in targets
                         if not any(o.startswith(t + ".") for o in targets) or t not in PACKAGES}
    return graph


def room_of(module: str) -> tuple[int, str]:
    """(floor number, room prefix) of a module: the longest prefix in FLOORS."""
    best = (-1, "", "")
    for floor, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[2]):
                best = (floor, prefix, prefix)
    if best[0] < 0:
        raise SystemExit(f"{module}: in no room of FLOORS (benchmarks/layout.py)")
    return best[0], best[1]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def upward_arrows(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where the imported module lives on a higher floor."""
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if room_of(b)[0] > room_of(a)[0])


def largest(files: dict[str, Path], count: int = 8) -> tuple[list, list]:
    """The longest modules and functions, as (lines, name) lists."""
    modules, functions = [], []
    for module, path in files.items():
        text = path.read_text()
        modules.append((text.count("\n"), module))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno - node.lineno + 1, f"{module}.{node.name}"))
    return sorted(modules, reverse=True)[:count], sorted(functions, reverse=True)[:count]


def report(graph: dict[str, set[str]], files: dict[str, Path]) -> str:
    """The plan as markdown."""
    rooms = collections.defaultdict(list)
    for module in files:
        rooms[room_of(module)].append(module)
    lines = ["## Floors (bottom-up) and rooms", ""]
    for floor, (name, _) in enumerate(FLOORS):
        here = {prefix: mods for (f, prefix), mods in rooms.items() if f == floor}
        listed = ", ".join(f"{prefix} ({len(mods)})" for prefix, mods in sorted(here.items()))
        lines.append(f"{floor}. {name}: {listed}")
    room_arrows = collections.Counter((room_of(a)[1], room_of(b)[1]) for a, t in graph.items()
                                      for b in t if room_of(a)[1] != room_of(b)[1])
    top_level = [m for m in files if m.count(".") == 1 and m.startswith("signlang_jax.")
                 and files[m].name != "__init__.py"]
    lines += ["", f"modules: {len(files)}; at the top of signlang_jax/: {len(top_level)}; "
              f"import arrows between modules: {sum(len(t) for t in graph.values())}; "
              f"between rooms: {len(room_arrows)} room pairs", ""]
    found = circles(graph)
    lines.append(f"## Import circles: {len(found)}")
    lines += [f"- {' <-> '.join(c)}" for c in found]
    up = upward_arrows(graph)
    lines += ["", f"## Arrows back up (to a higher floor): {len(up)}"]
    lines += [f"- {a} -> {b}" for a, b in up]
    modules, functions = largest(files)
    lines += ["", "## Largest modules (lines)"] + [f"- {n} {m}" for n, m in modules]
    lines += ["", "## Largest functions (lines)"] + [f"- {n} {f}" for n, f in functions]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the plan; with --check, fail on circles or arrows back up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 on a circle or an arrow up")
    args = parser.parse_args(argv)
    files = module_files()
    graph = import_graph(files)
    print(report(graph, files))
    if args.check and (circles(graph) or upward_arrows(graph)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
