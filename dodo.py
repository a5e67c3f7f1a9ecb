"""revive from a clone: ``.venv/bin/doit build`` runs the same tasks as the
installed ``revive build`` (tasks/dodo.py)."""

from tasks.dodo import *  # noqa: F401,F403
