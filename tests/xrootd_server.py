"""A local XRootD server for the tests of remote input files (``root://``).

The server is Debian's ``xrootd`` (package ``xrootd-server``), started on a free port of
localhost, serving a directory of copied test files, and stopped at the end; the client side is
what an analyst installs (``pip install -e '.[remote]'``: the ``xrootd`` bindings and
``fsspec-xrootd``, through which uproot reads ``root://`` URLs). Starting a daemon is opt-in
(``HTT_TEST_XROOTD=1``; ``REQUIRE_XROOTD=1``, which .ci/run sets, makes a server that cannot start
a failure instead of a skip: ``tests.conftest.opted_in``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: Why the XRootD tests skipped, and how to run them.
OPT_IN = (
    "XRootD tests are opt-in: HTT_TEST_XROOTD=1 starts a local xrootd server (Debian package "
    "xrootd-server; client: pip install -e '.[remote]') serving copies of tests/data"
)


def missing() -> str | None:
    """What is missing to serve and read ``root://`` files here, or None."""
    if shutil.which("xrootd") is None:
        return "no xrootd executable (apt-get install xrootd-server)"
    for module, package in (("XRootD", "xrootd"), ("fsspec_xrootd", "fsspec-xrootd")):
        if importlib.util.find_spec(module) is None:
            return f"no Python package {package} (pip install -e '.[remote]')"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("localhost", port)) == 0


@contextmanager
def serving(files: Iterable[Path], timeout: float = 30.0) -> Iterator[str]:
    """An xrootd server for copies of ``files``; yields the URL prefix (``root://localhost:PORT//``)
    that a file's name completes. Raises RuntimeError with the server's log if it does not
    start."""
    # Not under pytest's 0700 temp root: as root, xrootd drops to the `daemon` user (it refuses
    # to serve as superuser), which must read the files and write its admin directory.
    root = Path(tempfile.mkdtemp(prefix="htt-xrootd-"))
    export, admin = root / "export", root / "admin"
    export.mkdir()
    admin.mkdir()
    for path in files:
        shutil.copy(path, export / path.name)
    for path in (root, export, admin, *export.iterdir()):
        path.chmod(0o777 if path == admin else 0o755 if path.is_dir() else 0o644)
    config = root / "xrootd.cfg"
    config.write_text(
        f"all.export /\noss.localroot {export}\nall.adminpath {admin}\nall.pidpath {admin}\n"
    )
    port = _free_port()
    command = ["xrootd", "-c", str(config), "-p", str(port), "-l", str(admin / "xrootd.log")]
    if os.geteuid() == 0:
        command += ["-R", "daemon"]
    with open(root / "xrootd.out", "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(port):
            if server.poll() is not None or time.monotonic() > deadline:
                logs = [root / "xrootd.out", *admin.glob("xrootd.log*")]
                log = "\n".join(path.read_text()[-2000:] for path in logs)
                raise RuntimeError(f"xrootd did not start on port {port}:\n{log}")
            time.sleep(0.2)
        yield f"root://localhost:{port}//"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)
