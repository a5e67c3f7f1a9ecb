"""Stage 0, sources: each [sources.NAME] fetched on the host into
artifacts/sources/NAME/, the folder a build names with
``shares = { src = "sources:NAME" }``.

- ``debian = "PKG"``: the Debian source package (.dsc, upstream tarball,
  Debian changes) by ``apt-get source --download-only`` under a private apt
  configuration; the .dsc's sha256 is recorded in revive.lock next to
  config.toml and a later fetch whose .dsc differs is refused;
- ``url`` + ``sha256``: a tarball, checked and unpacked safely;
- ``path``: a local folder, copied so that what the build sees is what was
  hashed.

artifacts/sources/NAME.json (the target builds depend on) lists every
file with its sha256, so a build reruns when its sources' contents change.
"""

import json
import shutil
from pathlib import Path

from .common import Paths, action, files_under, say, settings, stage_inputs, uptodate
from revive.core.errors import UserError
from revive.core.files import atomic_path, sha256_file, write_atomic
from revive.fetch import lock, tarball


def folder(paths: Paths, name: str) -> Path:
    return paths.artifacts / "sources" / name


def manifest(paths: Paths, name: str) -> Path:
    return paths.artifacts / "sources" / f"{name}.json"


@action
def fetch_source(inputs, paths: Paths) -> None:
    (key, source), = ((k, v) for k, v in inputs.values.items() if k.startswith("sources."))
    where = f"config.toml: [{key}]"
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = paths.logs / f"sources-{source.name}.log"
    record = {"name": source.name, **source.slice()}
    with atomic_path(folder(paths, source.name)) as tmp:
        if source.kind == "debian":
            record.update(_fetch_debian(inputs, paths, source, tmp, log))
        elif source.kind == "url":
            archive = tarball.fetch(source.url, source.sha256, paths.cache, key=where)
            tarball.unpack(archive, tmp, key=where)
        else:
            if not source.path.is_dir():
                raise UserError(f"{where} path: {source.path} is not a folder")
            shutil.copytree(source.path, tmp, symlinks=True)
        record["files"] = {str(p.relative_to(tmp)): sha256_file(p)
                           for p in sorted(tmp.rglob("*"))
                           if p.is_file() and not p.is_symlink()}
        # Written last: no manifest, no target doit trusts.
        write_atomic(manifest(paths, source.name), json.dumps(record, indent=2) + "\n")
    say(f"sources {source.name}: {len(record['files'])} files in "
        f"{folder(paths, source.name)}")


def _fetch_debian(inputs, paths: Paths, source, dest: Path, log: Path) -> dict:
    from revive.guests.debian import sources as debian_sources
    suite = inputs["guest.suite"]
    dest.mkdir()
    files = debian_sources.fetch(source.debian, dest, suite=suite,
                                 sources=list(inputs.host["apt_sources"]), cache=paths.cache,
                                 log=log)
    dscs = [f for f in files if f.suffix == ".dsc"]
    if len(dscs) != 1:
        raise UserError(f"config.toml: [sources.{source.name}] debian: apt-get source "
                        f"{source.debian} gave {len(dscs)} .dsc files, not one", log=str(log))
    entry = {"debian": source.debian, "suite": suite,
             "dsc": dscs[0].name, "dsc_sha256": sha256_file(dscs[0])}
    lock.check_and_record(inputs.limits["lock"], source.name, entry,
                          compare=("dsc", "dsc_sha256"))
    return {**entry, "mirror": inputs["guest.mirror"]}


def task_sources():
    """Fetch each [sources.NAME] into artifacts/sources/NAME/."""
    cfg = settings()
    paths = Paths(cfg)
    for source in cfg.sources.values():
        inputs = stage_inputs(cfg, f"sources.{source.name}")
        yield {"name": source.name,
               "actions": [(fetch_source, [inputs, paths])],
               "file_dep": files_under(source.path) if source.kind == "path" else [],
               "targets": [manifest(paths, source.name)],
               "uptodate": [uptodate(inputs)],
               "clean": [(_clean, [paths, source.name])],
               "doc": f"fetch {source.kind} source {source.name}"}


def _clean(paths: Paths, name: str) -> None:
    from revive.core.files import remove
    remove(folder(paths, name))
    remove(manifest(paths, name))
