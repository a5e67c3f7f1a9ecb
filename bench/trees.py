"""The `trees` part of bench/revive_vs_boot.py: big read-only source trees.

For each size in --tree-sizes (files of ~200 bytes, 100 per folder):
- in the guest: a build (``run_build``, as `doit build` runs it) whose
  command lists the tree (`ls -R`) and reads every file (`find -type f |
  xargs cat`), timed inside the guest, by the baseline commit's code on its
  own project (its own install and snapshot, made in this run with its own
  dodo.py: its device model, its kernel modules) and by this tree's code on
  ``--project``; this tree's code shares a big tree as an ext2 image on a
  CD drive (the first build makes the image, the second reuses it), the
  baseline's over 9p;
- on the host: `doit build` with nothing to do when the build shares the
  tree, by the baseline commit's code and by this tree's, beside the demo's
  no-op (medians of --runs, interleaved; same project, one doit database
  per code and config).
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LIST_READ = ('read a _ </proc/uptime; n=$(ls -R /mnt/src | wc -l); '
             'b=$(find /mnt/src -type f | xargs cat | wc -c); read c _ </proc/uptime; '
             'echo "GUEST $a $c"; echo "TREE $n $b"; grep " /mnt/src " /proc/mounts')


def make_tree(root: Path, files: int) -> Path:
    if root.exists():
        return root
    for i in range(files):
        folder = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}.c").write_text(f"/* file {i} */\n" + "int x;\n" * 25)
    return root


def baseline_project(old: Path, project: Path, into: Path) -> Path:
    """A copy of ``project``'s config and demo folder with artifacts of its
    own, built from scratch by the baseline's code (install and snapshot
    included): the baseline's snapshot has the baseline's device model and
    guest, not this tree's."""
    into.mkdir(parents=True)
    shutil.copy(project / "config.toml", into / "config.toml")
    shutil.copytree(project / "examples", into / "examples", symlinks=True)
    build_project(old, into)
    return into / "artifacts"


def build_project(code: Path, project: Path) -> None:
    """`doit build` in ``project`` by ``code``'s dodo.py: its stages up to
    date (this tree's project too: a snapshot made before the tree drives
    has none, and its big shares would stay on 9p)."""
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"),
               REVIVE_CONFIG=str(project / "config.toml"))
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(code / "dodo.py"), "-d",
                           str(project), "build"], env=env, capture_output=True, text=True,
                          timeout=3600, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"{project} did not build by {code}:\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-3000:]}")


def in_guest(code: Path, artifacts: Path, tree: Path, tmp: Path) -> dict:
    """One build reading ``tree`` by ``code`` on ``artifacts``' snapshot."""
    from guest_speed import build_with
    result = build_with(code, artifacts, "bench-trees", LIST_READ, tree, tmp)
    log = (tmp / "out" / "log").read_text(errors="replace")
    found = re.search(r"TREE (\d+) (\d+)", log)
    mount = re.search(r"^\S+ /mnt/src (\S+) ", log, re.M)
    if not found or not mount:
        raise SystemExit(f"bench-trees by {code}: unexpected output: {log[-1000:]!r}")
    result["entries"], result["bytes"] = int(found.group(1)), int(found.group(2))
    result["mounted"] = mount.group(1)
    return result


def noop(tree_dir: Path, project: Path, label_trees: "dict[str, Path]", runs: int,
         tmp: Path) -> "dict[tuple, float]":
    """`doit build` with nothing to do in ``project``: with a config whose one
    build shares examples/hello (the demo) and with one whose build shares
    the tree, by each tree's code; each (code, config) pair has its own
    copy of the project's doit database (--db-file), so that the stages
    stay up to date and the runs do not undo each other's records."""
    env = dict(os.environ, REVIVE_CACHE=str(REPO / "artifacts" / "cache"))
    tmp.mkdir(parents=True, exist_ok=True)
    base = (project / "config.toml").read_text().split("\n[builds.")[0]
    runs_of = {}
    times: "dict[tuple, list[float]]" = {}
    try:
        for label, code in label_trees.items():
            for variant in ("demo", "tree"):
                host = tree_dir if variant == "tree" else project / "examples" / "hello"
                # In the project's folder: [paths] are relative to the config.
                config = project / f".bench-config-{len(runs_of)}.toml"
                # A build of its own per (code, config): one build name would
                # share one record of the folder (artifacts/trees/), and each
                # run would find the other folder's record and hash every
                # file again (how the tree's no-op measured 4.5× the demo's).
                name = f"noop{len(runs_of)}"
                config.write_text(base.replace('host = "examples/hello"', f'host = "{host}"')
                                  + f'\n[builds.{name}]\ncommand = "true"\n'
                                  f'shares = {{ src = "{host}" }}\ntimeout = "5m"\n')
                db = project / "artifacts" / f".doit-bench-{len(runs_of)}.json"
                shutil.copy(project / "artifacts" / ".doit.json", db)
                argv = [sys.executable, "-m", "doit", "-f", str(code / "dodo.py"), "-d",
                        str(project), "--db-file", str(db), "build"]
                run_env = dict(env, REVIVE_CONFIG=str(config))
                runs_of[(label, variant)] = (argv, run_env, db, name)
                if code != REPO:
                    # The baseline's files are at other paths than those the
                    # database holds: record them as they are, without running
                    # a stage (the stages' inputs are the same files).
                    subprocess.run([*argv[:3], "reset-dep", *argv[3:-1]], env=run_env,
                                   check=True, capture_output=True)
                proc = subprocess.run(argv, env=run_env, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{label} {variant}: first build failed:\n{proc.stdout}"
                                     f"\n{proc.stderr}")
        for i in range(runs):
            order = list(runs_of.items())
            if i % 2:
                order.reverse()
            for key, (argv, run_env, _db, name) in order:
                start = time.monotonic()
                proc = subprocess.run(argv, env=run_env, capture_output=True, text=True)
                times.setdefault(key, []).append(time.monotonic() - start)
                if proc.returncode != 0 or f"-- build:{name}" not in proc.stdout:
                    raise SystemExit(f"{key}: not a no-op:\n{proc.stdout}\n{proc.stderr}")
    finally:
        for _argv, env_of, db, _name in runs_of.values():
            db.unlink(missing_ok=True)
            Path(env_of["REVIVE_CONFIG"]).unlink(missing_ok=True)
    return {key: statistics.median(v) for key, v in times.items()}


def trees(paths, meta, cfg, runs: int, baseline: str, project: Path, sizes, guest: bool,
          tmp: Path) -> str:
    from guest_speed import baseline_tree
    old, commit = baseline_tree(baseline, tmp / "baseline-trees")
    old_artifacts = baseline_project(old, project, tmp / "baseline-project") if guest else None
    if guest:
        build_project(REPO, project)
    lines = []
    for files in sizes:
        tree = make_tree(tmp / "trees" / f"t{files}" / "tree", files)
        if guest:
            lines.append(f"\n| {files} files: list + read in the guest (a build) | mounted as "
                         "| seconds in the guest | build total (host) | image made (host) "
                         "| entries listed | bytes read |\n|---|---|---|---|---|---|---|")
            rows = [(f"{commit} (baseline)", old, old_artifacts),
                    ("this tree, first build", REPO, paths.artifacts),
                    ("this tree, image reused", REPO, paths.artifacts)]
            base = None
            for label, code, artifacts in rows:
                r = in_guest(code, artifacts, tree, paths.work / "bench" / "trees")
                base = base or r["guest"]
                made = r["timings"].get("tree_images")
                lines.append(f"| {label} | {r['mounted']} | {r['guest']:.2f} "
                             f"({base / r['guest']:.1f}× faster) | {r['timings']['total']:.2f} "
                             f"| {'–' if made is None else f'{made:.2f}'} | {r['entries']} "
                             f"| {r['bytes']} |")
        times = noop(tree, project, {f"{commit} (baseline)": old, "this tree": REPO},
                     runs, tmp / f"noop-{files}")
        lines.append(f"\n| {files} files: `doit build` with nothing to do (median of {runs}) "
                     "| demo | build sharing the tree | ratio |\n|---|---|---|---|")
        for label in (f"{commit} (baseline)", "this tree"):
            demo, shared = times[(label, "demo")], times[(label, "tree")]
            lines.append(f"| {label} | {demo:.2f} | {shared:.2f} | {shared / demo:.2f}× |")
    return "\n".join(lines)
