"""The mechanism's packages form layers: no import cycle between them, and
none imports doit or the stage modules (tasks/). Read from the source, every
import counted, also those inside functions (a function-level import is
still a dependency; it only hides a cycle until the function runs)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, root: Path) -> "set[str]":
    """Every module ``path`` imports, absolute, relative ones resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            # `from . import guests` names a module, not a name in `.`
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def layer(module: str) -> "str | None":
    """The package (or top-level module) of revive a module belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "revive" and len(parts) > 1 else None


def graph(root: Path) -> "tuple[dict[str, set[str]], dict[str, set[str]]]":
    """(layer → layers it imports, module → outside modules it imports)."""
    edges: "dict[str, set[str]]" = {}
    outside: "dict[str, set[str]]" = {}
    known = {module_name(p, root) for p in root.rglob("*.py")}
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        mine = layer(name)
        for target in imports(path, root):
            if target.startswith("revive."):
                if target in known and layer(target) not in (None, mine):
                    edges.setdefault(mine, set()).add(layer(target))
            else:
                outside.setdefault(name, set()).add(target.split(".")[0])
    return edges, outside


def cycle(edges: "dict[str, set[str]]") -> "list[str] | None":
    """One cycle of the graph as a path, or None."""
    state: "dict[str, str]" = {}
    stack: "list[str]" = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None
    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_revive_packages():
    edges, _ = graph(REPO / "revive")
    found = cycle(edges)
    assert found is None, "import cycle between packages: " + " -> ".join(found)


def test_the_mechanism_imports_neither_doit_nor_the_stages():
    _, outside = graph(REPO / "revive")
    wrong = {m: sorted(t & {"doit", "tasks"}) for m, t in outside.items()
             if t & {"doit", "tasks"}}
    assert wrong == {}


def test_the_checks_see_a_cycle_and_a_doit_import(tmp_path):
    """The two checks above on a made-up package that breaks both rules."""
    root = tmp_path / "revive"
    for rel, text in {"__init__.py": "", "a/__init__.py": "",
                      "a/one.py": "def f():\n    from ..b import two\n",
                      "b/__init__.py": "", "b/two.py": "from ..a import one\nimport doit\n",
                      "c.py": "from . import a\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    edges, outside = graph(root)
    assert cycle(edges) == ["a", "b", "a"]
    assert "doit" in outside["revive.b.two"]
    assert edges["c"] == {"a"}
