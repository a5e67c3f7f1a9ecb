"""Hosts that are really apart, for the cluster's tests: each host a network
namespace of its own (``ip netns``) with its own host name (a UTS
namespace) and its own /tmp (a mount namespace), joined to the others by veth pairs on bridges that live in one
more namespace, the hub. Nothing here touches the machine's own network
namespace: the bridges, links and addresses exist only inside namespaces
the test made, and traffic flows only between them. Needs root (CI is
root); ``why_not()`` says in one line why namespaces cannot be made here."""

import os
import signal
import subprocess


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=check)


def why_not() -> "str | None":
    """None if network namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    probe = f"rvprobe{os.getpid()}"
    try:
        made = _ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "no `ip` command (iproute2) to make network namespaces"
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Net:
    """Namespaces named ``{tag}-HOST`` and the hub ``{tag}-hub`` holding one
    bridge per network (``lan``: 10.77.0.0/24, ``san``: 10.78.0.0/24)."""

    NETS = {"lan": "10.77.0", "san": "10.78.0"}

    def __init__(self, tag: str):
        self.tag = tag
        self.hub = f"{tag}-hub"
        self.hosts: "dict[str, dict]" = {}     # name -> {ns, hostname, links}
        self.procs: "list[subprocess.Popen]" = []
        _ip("netns", "add", self.hub)
        for i, net in enumerate(self.NETS):
            _ip("-n", self.hub, "link", "add", f"br{i}", "type", "bridge")
            _ip("-n", self.hub, "link", "set", f"br{i}", "up")

    def host(self, name: str, hostname: str, nets: "dict[str, int]") -> None:
        """A host on ``nets`` (network -> last byte of its address)."""
        ns = f"{self.tag}-{name}"
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        links = {}
        for net, last in nets.items():
            i = list(self.NETS).index(net)
            hub_end = f"v{len(self.hosts)}{i}"
            _ip("-n", self.hub, "link", "add", hub_end, "type", "veth", "peer", "name",
                f"e{i}", "netns", ns)
            _ip("-n", self.hub, "link", "set", hub_end, "master", f"br{i}", "up")
            _ip("-n", ns, "addr", "add", f"{self.NETS[net]}.{last}/24", "dev", f"e{i}")
            _ip("-n", ns, "link", "set", f"e{i}", "up")
            links[net] = hub_end
        self.hosts[name] = {"ns": ns, "hostname": hostname, "links": links,
                            "addr": {n: f"{self.NETS[n]}.{b}" for n, b in nets.items()}}

    def addr(self, name: str, net: str = "lan") -> str:
        return self.hosts[name]["addr"][net]

    # Run as the host's first process: its host name, then a /tmp of its own
    # (a tmpfs in a private mount namespace) with only ``keep`` (the
    # folders the test gave it, which may lie under /tmp) put back.
    _BOOT = r"""
hostname "$0" || exit
n=$1; shift; keep=""
while [ "$n" -gt 0 ]; do keep="$keep $1"; shift; n=$((n-1)); done
i=0
for k in $keep; do mkdir -p /run/revive-keep-$$-$i && mount --bind "$k" /run/revive-keep-$$-$i || exit; i=$((i+1)); done
mount -t tmpfs -o mode=1777 tmpfs /tmp || exit
i=0
for k in $keep; do mkdir -p "$k" && mount --move /run/revive-keep-$$-$i "$k" && rmdir /run/revive-keep-$$-$i || exit; i=$((i+1)); done
exec "$@"
"""

    def argv(self, name: str, argv: "list[str]") -> "list[str]":
        """``argv`` run on host ``name``: in its network namespace, with its
        own host name and its own /tmp, where only the folders ``keep(name,
        …)`` named are seen."""
        h = self.hosts[name]
        keep = h.get("keep", [])
        return ["ip", "netns", "exec", h["ns"], "unshare", "--uts", "--mount",
                "--propagation", "private", "--", "sh", "-c", self._BOOT, h["hostname"],
                str(len(keep)), *keep, *argv]

    def keep(self, name: str, *folders) -> None:
        """Folders host ``name`` sees (all else under /tmp is its own)."""
        self.hosts[name].setdefault("keep", []).extend(str(f) for f in folders)

    def spawn(self, name: str, argv: "list[str]", **kw) -> subprocess.Popen:
        proc = subprocess.Popen(self.argv(name, argv), stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def link(self, name: str, net: str, up: bool) -> None:
        """Plug or unplug host ``name``'s cable to ``net`` (at the hub)."""
        _ip("-n", self.hub, "link", "set", self.hosts[name]["links"][net],
            "up" if up else "down")

    def close(self) -> None:
        """Every process in the namespaces killed and reaped, the namespaces
        (their links and bridges with them) deleted."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        for h in [*self.hosts.values(), {"ns": self.hub}]:
            pids = _ip("netns", "pids", h["ns"], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", h["ns"], check=False)

    def leftovers(self) -> "list[str]":
        listed = _ip("netns", "list", check=False).stdout
        return [line.split()[0] for line in listed.splitlines()
                if line.startswith(f"{self.tag}-")]

