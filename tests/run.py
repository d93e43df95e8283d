"""Run the test suite, installing what it needs first. This is the project's test command.

    python3 tests/run.py            # this interpreter
    python3 tests/run.py --all      # every CPython >= 3.9 found (pyenv, PATH) as well
    python3 tests/run.py -- -k sse  # arguments after -- go to pytest

Each interpreter gets a virtual environment under ``.venv/`` with the project installed
in editable mode with its ``test`` extra (pytest, hypothesis); it is rebuilt when
``pyproject.toml`` changes. The library itself needs none of this: it has no
dependencies.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_VERSION = (3, 9)


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def interpreters(all_versions: bool) -> list[str]:
    """This interpreter, and with *all_versions* the newest CPython of each minor version
    from 3.9 up found under pyenv or on PATH."""
    found = {sys.version_info[:2]: sys.executable}
    if all_versions:
        root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
        candidates = sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3")))
        for minor in range(9, 20):
            candidates.append(f"/usr/bin/python3.{minor}")
        for python in candidates:
            if not re.search(r"/3\.\d+(\.\d+)?/bin/python3$|python3\.\d+$", python):
                continue
            if not os.path.exists(python):
                continue
            version = _version(python)
            if version and version >= MIN_VERSION and version not in found:
                found[version] = python
    return [found[v] for v in sorted(found)]


def ensure_venv(python: str, extra: str) -> str:
    """Return the python of a venv for *python* with the project and *extra* installed."""
    version = _version(python)
    assert version is not None
    home = os.path.join(ROOT, ".venv", f"py{version[0]}.{version[1]}-{extra}")
    bindir = "Scripts" if os.name == "nt" else "bin"
    vpython = os.path.join(home, bindir, "python")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        stamp = hashlib.sha256(f.read() + python.encode()).hexdigest()
    stamp_file = os.path.join(home, ".alltoken-stamp")
    if os.path.exists(stamp_file) and open(stamp_file).read() == stamp:
        return vpython
    if python == sys.executable:
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
    else:
        subprocess.run([python, "-m", "venv", "--clear", home], check=True)
    pip = [vpython, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", f"{ROOT}[{extra}]"], check=True)
    with open(stamp_file, "w") as f:
        f.write(stamp)
    return vpython


def main(argv: list[str]) -> int:
    pytest_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, pytest_args = argv[:i], argv[i + 1 :]
    all_versions = "--all" in argv
    status = 0
    for python in interpreters(all_versions):
        vpython = ensure_venv(python, "test")
        print(f"== tests on {python}", flush=True)
        rc = subprocess.run([vpython, "-m", "pytest", *pytest_args], cwd=ROOT).returncode
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
