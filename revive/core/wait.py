"""The one wait loop: a deadline, a predicate, and a check that the thing we
wait on is still alive on every round."""

import time
from typing import Callable, Optional, TypeVar

from .errors import UserError

T = TypeVar("T")


class WaitTimeout(UserError):
    pass


def wait_for(check: Callable[[], Optional[T]], *, timeout: float, what: str,
             alive: Callable[[], Optional[str]] = lambda: None,
             interval: float = 0.05, last_seen: Callable[[], str] = lambda: "",
             log: "str | None" = None) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    ``alive`` returns None while the watched process lives, else a sentence
    saying how it died; that ends the wait at once. On timeout ``check`` runs
    one last time, then the error says what was last seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        dead = alive()
        result = check()
        if result:
            return result
        if dead:
            # Checked after the predicate: a guest may print its last words
            # and power off between two rounds.
            raise UserError(f"{what}: {dead}", log=log)
        if time.monotonic() >= deadline:
            result = check()
            if result:
                return result
            seen = last_seen()
            seen = f"; last seen: {seen}" if seen else ""
            raise WaitTimeout(f"{what}: no answer within {timeout:.0f} s{seen}",
                              log=log)
        time.sleep(interval)
