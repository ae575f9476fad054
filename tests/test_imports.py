"""The package's floor plan: no import cycles, nothing imports from a floor above.

Every ``import`` statement of every module is read — at module level and inside
functions — so a cycle hidden behind a function-level import counts too.
"""

import ast
import os

from layer_checks import REPO

PACKAGE = os.path.join(REPO, "nasseg_tf")

#: Floors from the ground up; a module may import only from its own floor or below.
#: (The command line is the top floor: it wires everything together.)
FLOORS = (
    ("nasseg_tf", "nasseg_tf.fileio", "nasseg_tf.runfiles", "nasseg_tf.internals",
     "nasseg_tf.visualize", "nasseg_tf.counting"),
    ("nasseg_tf.search_space",),
    ("nasseg_tf.layers",),
    ("nasseg_tf.models",),
    ("nasseg_tf.data",),
    ("nasseg_tf.train", "nasseg_tf.export"),
    ("nasseg_tf.search",),
    ("nasseg_tf.bench",),
    ("nasseg_tf.cli",),
)


#: The package's front door, ``nasseg_tf/__init__.py``: it imports the modules that
#: register Keras objects (layers, the search's layers), whatever their floor, so that
#: ``import nasseg_tf`` is enough for ``keras.saving.load_model``. No module imports
#: it by name, so it closes no cycle.
FRONT_DOOR = "nasseg_tf"


def _module_name(path):
    relative = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    return relative[:-len(".__init__")] if relative.endswith(".__init__") else relative


def _modules():
    out = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                out[_module_name(path)] = path
    return out


def _imports(path, modules):
    """The package modules ``path`` imports (anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from a.b import c``: the submodule a.b.c when c is one, else a.b itself.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                     else node.module for a in node.names]
        else:
            continue
        for name in names:
            if name in modules and name != "nasseg_tf":
                found.add(name)
    return found


def _graph():
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _floor(module):
    best, level = None, None
    for index, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best):
                    best, level = prefix, index
    return level


def _cycle(graph):
    """One import cycle among the modules of ``graph``, or None (iterative DFS)."""
    state = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


def test_no_import_cycle_outside_the_command_line():
    graph = {m: {d for d in deps if not d.startswith("nasseg_tf.cli")}
             for m, deps in _graph().items() if not m.startswith("nasseg_tf.cli")}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_nothing_imports_from_a_floor_above():
    upward = [f"{module} (floor {_floor(module)}) imports {dep} (floor {_floor(dep)})"
              for module, deps in sorted(_graph().items()) for dep in sorted(deps)
              if _floor(dep) > _floor(module) and module != FRONT_DOOR]
    assert not upward, "\n".join(upward)


def test_every_module_has_a_floor():
    assert all(_floor(module) is not None for module in _modules())


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
