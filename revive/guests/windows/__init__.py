"""The Windows guest: the user's own install ISO, installed unattended.

- ``settings``: the ``[guest]`` table (kind = "windows") validated into
  ``WindowsSettings``; ``check_iso`` refuses a missing or wrong ISO.
- ``answers``: autounattend.xml (Vista to 11) or winnt.sif (XP, 2003).
- ``cygwin``: the offline Cygwin closure copied, checked, onto the payload.
- ``setup_script``: the payload CD (marker, setup.cmd/setup.sh), the serial
  report they leave (host key), and share mapping commands.
- ``profile``: the QEMU device model as an argv list.

No doit here: the stage modules in tasks/ declare the tasks.
"""

from .settings import WindowsSettings, check_iso, from_table

__all__ = ["WindowsSettings", "check_iso", "from_table"]
