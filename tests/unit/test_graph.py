"""docs/graph.svg is the real task graph: regenerated here from the default
config.toml through doit's loader, it must match what is committed."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REGENERATE = ".venv/bin/python -m tasks.graph"


def regenerate(tmp_path: Path) -> "tuple[str, str]":
    # A copy of the default project, so that a doit running in the
    # repository (which holds the project's lock) does not get in the way.
    (tmp_path / "config.toml").write_text((REPO / "config.toml").read_text())
    (tmp_path / "examples").symlink_to(REPO / "examples")
    proc = subprocess.run([sys.executable, "-m", "tasks.graph", "--config",
                           str(tmp_path / "config.toml"), "--dot", str(tmp_path / "g.dot"),
                           "--svg", str(tmp_path / "g.svg")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (tmp_path / "g.dot").read_text(), (tmp_path / "g.svg").read_text()


def stable(svg: str) -> str:
    """The SVG without what changes with nothing in the graph (comments:
    the graphviz version)."""
    return re.sub(r"<!--.*?-->\n?", "", svg, flags=re.S)


def test_the_committed_picture_is_the_graph_of_the_default_config(tmp_path):
    dot, svg = regenerate(tmp_path)
    assert dot == (REPO / "docs" / "graph.dot").read_text(), \
        f"the task graph changed: run {REGENERATE} and commit docs/"
    assert stable(svg) == stable((REPO / "docs" / "graph.svg").read_text()), \
        f"docs/graph.svg is out of date: run {REGENERATE} and commit docs/"


def test_the_graph_is_made_from_the_tasks(tmp_path):
    dot, svg = regenerate(tmp_path)
    assert '"snapshot" -> "build:hello" [label="meta.json"];' in dot
    assert '"config.toml" -> "build:hello" [label="[builds.hello]", style=dashed];' in dot
    assert '"examples/hello/" -> "build:hello";' in dot
    assert "<svg" in svg and "build:hello" in svg
    # A build added to the config appears in the picture.
    (tmp_path / "config.toml").write_text((REPO / "config.toml").read_text()
                                          + '\n[builds.extra]\ncommand = "true"\n')
    proc = subprocess.run([sys.executable, "-m", "tasks.graph", "--config",
                           str(tmp_path / "config.toml"), "--dot", str(tmp_path / "g2.dot"),
                           "--svg", str(tmp_path / "g2.svg")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '"snapshot" -> "build:extra" [label="meta.json"];' in (tmp_path / "g2.dot").read_text()
