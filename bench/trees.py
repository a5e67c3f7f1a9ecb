"""The `trees` part of bench/revive_vs_boot.py: big read-only source trees.

For each size in --tree-sizes (files of ~200 bytes, 100 per folder):
- in the guest (this tree's code, a revived copy, the tree as the build's
  read-only 9p share): listing it (`ls -R`) and reading every file
  (`find -type f | xargs cat`), timed inside the guest, over 9p as mounted
  today, over 9p remounted with cache=loose, and from a copy unpacked in the
  guest's RAM from one tarball read over the share (unpacking included);
- on the host: `doit build` with nothing to do when the build shares the
  tree, by the baseline commit's code and by this tree's, beside the demo's
  no-op (medians of --runs, interleaved; same project, one doit database
  per code and config).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LIST_READ = ('read a _ </proc/uptime; n=$(ls -R {dir} | wc -l); '
             'b=$(find {dir} -type f | xargs cat | wc -c); read c _ </proc/uptime; '
             'echo "TREE $a $c $n $b"')


def make_tree(root: Path, files: int) -> Path:
    if root.exists():
        return root
    for i in range(files):
        folder = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}.c").write_text(f"/* file {i} */\n" + "int x;\n" * 25)
    return root


def _timed(text: str) -> "tuple[float, int, int]":
    for line in text.splitlines():
        if line.startswith("TREE "):
            a, c, n, b = line.split()[1:5]
            return float(c) - float(a), int(n), int(b)
    raise SystemExit(f"no timing in the guest's output: {text[-500:]}")


def in_guest(paths, meta, cfg, work: Path, tree: Path) -> "dict[str, float]":
    """Listing + reading the tree three ways in one revived copy."""
    from revive.machine import revived
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tarball = tree.parent / f"{tree.name}.tar"
    if not tarball.exists():
        with tarfile.open(tarball, "w") as tar:
            tar.add(tree, arcname="tree")
    share_dir = tree.parent
    share = next(n for n, s in meta["shares"].items() if s["mode"] == "ro")
    guest = meta["shares"][share]["guest"]
    found = {}
    with revived(paths.snapshot, artifacts=paths.artifacts, name="bench-trees",
                 shares={share: share_dir}, key=paths.key, work=work, logs=paths.logs,
                 timeout=cfg.timeouts.revive) as copy:
        def run(label, command):
            result = copy.run(command, timeout=3600)
            assert result.exit_code == 0, (label, result.output[-2000:])
            found[label] = _timed(result.output)
        run("9p as today", LIST_READ.format(dir=f"{guest}/{tree.name}"))
        run("9p, cache=loose", f"umount {guest} && mount -t 9p -o trans=virtio,"
            f"version=9p2000.L,msize=262144,ro,cache=loose {share} {guest} && "
            + LIST_READ.format(dir=f"{guest}/{tree.name}"))
        run("tarball unpacked in the guest's RAM",
            'read s _ </proc/uptime; mkdir -p /run/t && tar -xf '
            f'{guest}/{tarball.name} -C /run/t && '
            + LIST_READ.format(dir="/run/t/tree").replace("read a _ </proc/uptime; ", "a=$s; "))
    shutil.rmtree(work, ignore_errors=True)
    return found


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
                config.write_text(base.replace('host = "examples/hello"', f'host = "{host}"')
                                  + f'\n[builds.noop]\ncommand = "true"\n'
                                  f'shares = {{ src = "{host}" }}\ntimeout = "5m"\n')
                db = project / "artifacts" / f".doit-bench-{len(runs_of)}.json"
                shutil.copy(project / "artifacts" / ".doit.json", db)
                argv = [sys.executable, "-m", "doit", "-f", str(code / "dodo.py"), "-d",
                        str(project), "--db-file", str(db), "build"]
                run_env = dict(env, REVIVE_CONFIG=str(config))
                runs_of[(label, variant)] = (argv, run_env, db)
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
            for key, (argv, run_env, _db) in order:
                start = time.monotonic()
                proc = subprocess.run(argv, env=run_env, capture_output=True, text=True)
                times.setdefault(key, []).append(time.monotonic() - start)
                if proc.returncode != 0 or "-- build:noop" not in proc.stdout:
                    raise SystemExit(f"{key}: not a no-op:\n{proc.stdout}\n{proc.stderr}")
    finally:
        for _argv, env_of, db in runs_of.values():
            db.unlink(missing_ok=True)
            Path(env_of["REVIVE_CONFIG"]).unlink(missing_ok=True)
    return {key: statistics.median(v) for key, v in times.items()}


def trees(paths, meta, cfg, runs: int, baseline: str, project: Path, sizes, guest: bool,
          tmp: Path) -> str:
    from guest_speed import baseline_tree
    old, commit = baseline_tree(baseline, tmp / "baseline-trees")
    lines = []
    for files in sizes:
        tree = make_tree(tmp / "trees" / f"t{files}" / "tree", files)
        if guest:
            found = in_guest(paths, meta, cfg, paths.work / "bench" / "trees", tree)
            lines.append(f"\n| {files} files: list + read in the guest | seconds | "
                         "entries listed | bytes read |\n|---|---|---|---|")
            base = found["9p as today"][0]
            for label, (secs, n, b) in found.items():
                lines.append(f"| {label} | {secs:.1f} ({base / secs:.1f}× faster) | {n} "
                             f"| {b} |")
        times = noop(tree, project, {f"{commit} (baseline)": old, "this tree": REPO},
                     runs, tmp / f"noop-{files}")
        lines.append(f"\n| {files} files: `doit build` with nothing to do (median of {runs}) "
                     "| demo | build sharing the tree | ratio |\n|---|---|---|---|")
        for label in (f"{commit} (baseline)", "this tree"):
            demo, shared = times[(label, "demo")], times[(label, "tree")]
            lines.append(f"| {label} | {demo:.2f} | {shared:.2f} | {shared / demo:.2f}× |")
    return "\n".join(lines)
