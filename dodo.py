"""revive from a clone: ``.venv/bin/doit build`` runs the same tasks as the
installed ``revive build`` (tasks/dodo.py). doit starts here: the project is
taken (lock, sweep, signal handlers) before the tasks are loaded."""

from tasks.dodo import *  # noqa: F401,F403
from tasks.dodo import start

start()
