"""revive: build inside a throwaway VM revived from a memory snapshot.

Stages (see README.md): sources, keys, payload, iso, floppy → install → snapshot → build.
"""

from tasks.build import task_build  # noqa: F401
from tasks.install import task_install  # noqa: F401
from tasks.media import task_floppy, task_iso, task_keys, task_payload  # noqa: F401
from tasks.shell import task_shell  # noqa: F401
from tasks.snapshot import task_snapshot  # noqa: F401
from tasks.sources import task_sources  # noqa: F401
from tasks.summary import SummaryReporter

DOIT_CONFIG = {
    "default_tasks": ["build"],
    "verbosity": 2,
    "backend": "json",
    "dep_file": "artifacts/.doit.json",
    # doit's console output, then one table of the builds (also on failure).
    "reporter": SummaryReporter,
}
