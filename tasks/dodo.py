"""revive's doit tasks: what the clone's dodo.py and the ``revive`` command
both run. Importing this module and loading the tasks has no side effects;
both entry points call ``start()`` once first (the project lock, the sweep
of a killed run's debris, the signal handlers).

Stages (docs/concepts.md): sources, keys, payload, iso, floppy → install →
snapshot → build.
"""

from .build import task_build  # noqa: F401
from .common import start  # noqa: F401
from .install import task_install  # noqa: F401
from .media import task_floppy, task_iso, task_keys, task_payload  # noqa: F401
from .shell import task_shell  # noqa: F401
from .snapshot import task_snapshot  # noqa: F401
from .sources import task_sources  # noqa: F401
from .summary import SummaryReporter
from . import workers

# doit -n N: a worker killed outright fails its task instead of hanging doit.
workers.install()

DOIT_CONFIG = {
    "default_tasks": ["build"],
    "verbosity": 2,
    "backend": "json",
    "dep_file": "artifacts/.doit.json",
    # doit's console output, then one table of the builds (also on failure).
    "reporter": SummaryReporter,
}
