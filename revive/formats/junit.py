"""JUnit XML, the test report GitLab, Jenkins and GitHub's test reporters
read: one ``<testcase>`` per build with its time, its log as
``<system-out>`` (the tail when the log is large) and, when it failed, a
``<failure>`` holding the one-line error.

Only what XML 1.0 can carry goes in: a build's log may hold any byte (a
terminal escape, a NUL), which would make the whole report unreadable; such
characters are written as ``\\xNN``.
"""

import datetime
import re
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

# What a report carries of one log: CI pages show the end of it, and a build
# printing gigabytes must not make a report of gigabytes.
LOG_TAIL = 256 * 1024

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Case:
    name: str
    classname: str
    seconds: float
    failure: "str | None" = None        # the one-line error; None: it passed
    log: "Path | None" = None


def text(value: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def log_tail(path: Path, limit: int = LOG_TAIL) -> str:
    """The log's last ``limit`` bytes, saying what was left out."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - limit))
            data = fh.read(limit)
    except OSError as err:
        return f"revive: no log: {err.strerror}: {path}\n"
    tail = data.decode("utf-8", errors="replace")
    if size > limit:
        tail = f"revive: the first {size - limit} bytes of {path} are left out\n" + tail
    return text(tail)


def report(cases: "list[Case]", suite: str = "revive") -> bytes:
    now = datetime.datetime.now().astimezone().replace(microsecond=0)
    failures = sum(1 for c in cases if c.failure is not None)
    total = sum(c.seconds for c in cases)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)),
                      failures=str(failures), errors="0", time=f"{total:.3f}")
    tests = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                          failures=str(failures), errors="0", skipped="0",
                          time=f"{total:.3f}", timestamp=now.isoformat(),
                          hostname=socket.gethostname())
    for case in cases:
        element = ET.SubElement(tests, "testcase", name=text(case.name),
                                classname=text(case.classname), time=f"{case.seconds:.3f}")
        if case.failure is not None:
            failure = ET.SubElement(element, "failure", message=text(case.failure),
                                    type="failed")
            failure.text = text(case.failure)
        if case.log is not None:
            ET.SubElement(element, "system-out").text = log_tail(case.log)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
