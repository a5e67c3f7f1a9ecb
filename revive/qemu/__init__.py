"""QEMU, below any guest: one QEMU process with QMP and its serial console
(``process.Qemu``), its device model (``devices.DeviceModel``, the only
owner of argv), the accelerator choice (``accel``) and saved machine states
(``saved``: save, load, meta.json; a snapshot and a kept copy alike).

Nothing here knows guest kinds or channels; ``revive.machine.Machine``
puts a QEMU, its guest's kind and the channel to it together.
"""

from .process import (BINARY, INSTALL_HINT, Qemu, binary, features, free_port,  # noqa: F401
                      launch_with_port, port_in_use, tail, version)
