"""A picture of the task graph, made from the real one: loads revive's
tasks (tasks/dodo.py) through doit's loader (as `doit list` does) and
writes Graphviz DOT, then SVG with `dot`.

    .venv/bin/python -m tasks.graph                # docs/graph.dot and docs/graph.svg
    .venv/bin/python -m tasks.graph --config examples/debian.toml --svg /tmp/g.svg

Nodes are tasks (with the target they write), the folders of files they
read that no task makes, and config.toml with the slice each task hashes;
an edge from task A to task B means B reads a file A writes.
"""

import argparse
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def load_tasks(config: Path) -> list:
    """revive's tasks for ``config``, through doit's own loader; loading
    takes nothing (no lock: a doit may be running in the project)."""
    from doit.cmd_base import ModuleTaskLoader
    from . import dodo
    os.environ["REVIVE_CONFIG"] = str(Path(config).resolve())
    loader = ModuleTaskLoader(dodo)
    loader.setup({})
    loader.load_doit_config()
    # As `doit list` loads them: no delayed task creation, nothing executed.
    return loader.load_tasks(cmd=SimpleNamespace(execute_tasks=False), pos_args=[])


def _relative(path: str, roots: "list[Path]") -> str:
    p = Path(path)
    for root in roots:
        try:
            return str(p.relative_to(root))
        except ValueError:
            continue
    return str(p)


def _quote(text: str) -> str:
    # Labels carry DOT line breaks (backslash n): only quotes are escaped.
    return '"' + text.replace('"', '\\"') + '"'


def to_dot(tasks: list, root: Path) -> str:
    """The graph as DOT text, sorted so that the same graph gives the same text."""
    from .common import code_files, config_slice, shared_folder
    roots = [root, REPO]
    producer = {}
    for task in tasks:
        for target in task.targets:
            producer[str(target)] = task.name
    real = sorted((t for t in tasks if t.actions), key=lambda t: t.name)
    lines = ["digraph revive {",
             "  rankdir=LR;",
             '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9, color="#555555"];',
             '  "config.toml" [shape=note];']
    edges, folders = set(), defaultdict(set)
    for task in real:
        targets = sorted(_relative(t, roots) for t in task.targets)
        label = task.name + "".join(f"\\n{t}" for t in targets)
        lines.append(f"  {_quote(task.name)} [label={_quote(label)}];")
        for dep in sorted(task.file_dep):
            if dep in producer:
                edges.add((producer[dep], task.name, Path(dep).name))
            else:
                # Inputs no task makes, by folder (two levels: examples/hello/,
                # revive/guests/), so the picture stays readable.
                parts = Path(_relative(dep, roots)).parent.parts[:2]
                folders["/".join(parts) + "/"].add(task.name)
        for dep in sorted(task.task_dep):
            edges.add((dep, task.name, ""))
        for check, _args, _kwargs in task.uptodate:
            if isinstance(check, config_slice):
                edges.add(("config.toml", task.name, f"[{check.name}]"))
            elif isinstance(check, code_files):
                # revive's own files, hashed by relative path (no file_dep).
                for path in check.files:
                    parts = Path(_relative(str(path), roots)).parent.parts[:2]
                    folders["/".join(parts) + "/"].add(task.name)
            elif isinstance(check, shared_folder):
                # A shared folder is checked as a whole (one digest).
                parts = Path(_relative(str(check.folder / "x"), roots)).parent.parts[:2]
                folders["/".join(parts) + "/"].add(task.name)
    for folder in sorted(folders):
        lines.append(f"  {_quote(folder)} [shape=folder, color=\"#777777\"];")
        for name in sorted(folders[folder]):
            edges.add((folder, name, ""))
    for source, dest, label in sorted(edges):
        style = ', style=dashed' if source == "config.toml" else ""
        attrs = f" [label={_quote(label)}{style}]" if label else ""
        lines.append(f"  {_quote(source)} -> {_quote(dest)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(dot_text: str) -> str:
    """SVG from `dot` (Debian package graphviz)."""
    try:
        proc = subprocess.run(["dot", "-Tsvg"], input=dot_text, capture_output=True,
                              text=True, timeout=60, check=True)
    except FileNotFoundError:
        raise SystemExit("revive: graph: `dot` not found; run ./setup.sh "
                         "(apt-get install graphviz)") from None
    return proc.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config.toml")
    parser.add_argument("--dot", type=Path, default=DOCS / "graph.dot")
    parser.add_argument("--svg", type=Path, default=DOCS / "graph.svg")
    args = parser.parse_args(argv)
    dot_text = to_dot(load_tasks(args.config), args.config.resolve().parent)
    args.dot.parent.mkdir(parents=True, exist_ok=True)
    args.dot.write_text(dot_text)
    args.svg.write_text(render_svg(dot_text))
    print(f"revive: wrote {args.dot} and {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
