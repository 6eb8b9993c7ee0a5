"""The package's module-level imports form no cycle, and recorder/ keeps its layers.

Read from the source with ast (nothing is imported), through setup.cfg's
package_dir mapping. Imports inside functions are left out: they run late
and are how a module reaches a heavier one only when needed.

Layers of recorder/ (CONTRIBUTING.md): kernel imports only kernel; attach
and logs import kernel and nothing else of recorder/; drivers and agent sit
on top.
"""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDER_LAYERS = {
    "kernel": {"kernel"},
    "attach": {"kernel", "attach"},
    "logs": {"kernel", "logs"},
}


def package_dirs() -> dict[str, Path]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    out = {}
    for line in cfg["options"]["package_dir"].strip().splitlines():
        name, _, path = (part.strip() for part in line.partition("="))
        out[name] = REPO / path
    return out


def modules() -> dict[str, Path]:
    """Every module of the package, by its import name. A sub-package listed in package_dir
    (its own folder) is walked from there, not again under its parent."""
    roots = package_dirs()
    found = {}
    for package, folder in roots.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if any(f"{package}.{'.'.join(parts[:i])}" in roots for i in range(1, len(parts))):
                continue            # inside another listed package's folder: named from there
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def module_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules a module imports at its top level (the statements of its body,
    including `if`/`try` blocks, not function or class bodies)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out = set()
    for node in _top_level(tree.body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # `from pkg import mod` needs mod (pkg is initialised before any of its modules);
            # `from pkg import name` needs pkg itself.
            base = _absolute(name, is_package, node.module, node.level)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _top_level(body):
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            for block in (node.body, getattr(node, "orelse", []), getattr(node, "finalbody", []),
                          *[h.body for h in getattr(node, "handlers", [])]):
                yield from _top_level(block)


def _absolute(name: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = name.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: module_imports(name, path, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(g.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_the_module_graph_is_read_whole():
    g = graph()
    assert len(g) > 100 and "cicd_audit.recorder.kernel.abi" in g
    assert "cicd_audit.recorder.kernel.abi" in g["cicd_audit.recorder.kernel.block_tables"]


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_recorder_layers_import_only_downwards():
    wrong = []
    for name, imports in graph().items():
        layer = _recorder_layer(name)
        if layer not in RECORDER_LAYERS:
            continue
        for target in imports:
            other = _recorder_layer(target)
            if other is not None and other not in RECORDER_LAYERS[layer]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def _recorder_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["cicd_audit", "recorder"] or len(parts) < 3:
        return None
    return parts[2]
