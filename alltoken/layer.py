"""Build an AWS Lambda layer zip of alltoken with bytecode: ``python -m alltoken.layer``.

    python -m alltoken.layer alltoken-layer.zip --python python3.12

A build tool, not part of the client: nothing in the package imports it. Standard
library only, like the rest of the package.

Why bytecode: Lambda unpacks a layer into a read-only ``/opt``, so a layer without
``__pycache__`` makes every cold start compile the package from source and throw the
result away. A cold ``python -I -S -c "import alltoken"`` from an unpacked, read-only
layer (medians of 30): 56 ms without bytecode and 42 ms with it on Python 3.9, 68 ms
and 49 ms on 3.13, of which starting the interpreter is 6 and 8 ms.

What the zip holds, under ``python/`` (the directory Lambda puts on ``sys.path``):

- ``python/alltoken/*.py`` and ``py.typed``, exactly as in this package;
- ``python/alltoken/__pycache__/<module>.<cache tag>.pyc``, compiled **by the target
  interpreter** (``--python``, default: the one running the build). Bytecode is
  version-specific: a pyc is used only by the CPython minor version that wrote it, so
  build with the same minor version as the function's runtime. A mismatch is not an
  error, only slow: the interpreter then compiles from source, as without this tool.

The pycs are *unchecked hash-based* (PEP 552, ``UNCHECKED_HASH``): the interpreter
uses them without looking at the source's modification time, which a zip does not
carry faithfully (DOS timestamps: 2-second resolution, no time zone), and without
reading and hashing the source, which a checked hash-based pyc costs on every import.
The price is that an edited ``.py`` next to its pyc is **not** noticed: fine for a
read-only ``/opt``, wrong for a directory you edit in place. The code objects name
``/opt/python/alltoken/...`` as their file; the import system replaces that with the
real location when it loads them, so tracebacks name the right file anywhere.

Optimization levels: by default only level 0, what Lambda's runtimes run (they start
Python without ``-O``). ``-O``/``-OO`` pycs (``optimize=(0, 1, 2)``, ``-O 1 -O 2`` on
the command line) matter only to a function that sets ``PYTHONOPTIMIZE``; they add the
bytecode's size again per level, and the library's two asserts are internal invariants.

The zip is deterministic: entries sorted, every timestamp 1980-01-01, fixed modes, and
the target compiles with ``PYTHONHASHSEED=0`` (set literals are marshalled in hash
order), so the same sources, target and builder give the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from typing import Final, Optional

__all__ = ["build", "main"]

#: The directory of a layer that Lambda's Python runtimes put on ``sys.path``.
LAYER_DIR: Final = "python"

#: Where Lambda unpacks a layer; recorded as the file of the compiled code objects.
UNPACKED_AT: Final = "/opt"

#: The oldest CPython the package runs on (pyproject's ``requires-python``).
MIN_VERSION: Final = (3, 9)

#: The earliest time a zip entry can carry (DOS dates start in 1980).
_ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)

# Runs in the target interpreter, which checks nothing else: build() has checked it.
_COMPILE: Final = """\
import compileall, sys, py_compile
ok = compileall.compile_dir(
    sys.argv[1], maxlevels=0, ddir=sys.argv[2], quiet=1, workers=1,
    optimize=[int(level) for level in sys.argv[3:]],
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
)
sys.exit(0 if ok else 1)
"""

# Python 2 must be able to run this, to be told it is too old.
_PROBE: Final = (
    "import sys; print('%d %d' % sys.version_info[:2]);"
    " print(getattr(getattr(sys, 'implementation', None), 'cache_tag', None))"
)


def _package_files() -> list[str]:
    """The names of the files the layer ships: every module and ``py.typed``."""
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(n for n in os.listdir(here) if n.endswith(".py") or n == "py.typed")


def _child_env() -> dict[str, str]:
    # No PYTHON* setting of the caller's may change what is compiled or where; a fixed
    # hash seed makes the order of marshalled set constants reproducible.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    return env


def _probe(python: str) -> str:
    """Check that *python* can run alltoken; return its bytecode cache tag."""
    try:
        out = subprocess.run(
            [python, "-S", "-c", _PROBE], capture_output=True, text=True, timeout=60,
            env=_child_env(), check=True,
        ).stdout.split()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"python: {python!r} did not run: {exc}") from exc
    if len(out) != 3 or not (out[0] + out[1]).isdigit():
        raise ValueError(f"python: {python!r} is not a CPython that reported its version")
    version = (int(out[0]), int(out[1]))
    if version < MIN_VERSION:
        raise ValueError(
            f"python: {python!r} is Python {version[0]}.{version[1]}; alltoken needs "
            f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer"
        )
    if out[2] == "None":
        raise ValueError(f"python: {python!r} does not cache bytecode (no cache tag)")
    return out[2]


def _pyc_name(module: str, cache_tag: str, level: int) -> str:
    # importlib.util.cache_from_source's naming, for a tag that is not ours.
    opt = f".opt-{level}" if level else ""
    return f"__pycache__/{module}.{cache_tag}{opt}.pyc"


def _write_zip(out: str, root: str, names: Sequence[str]) -> None:
    """Write *names* (paths relative to *root*, with ``/``) to *out*, reproducibly."""
    directory = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".alltoken-layer-", suffix=".zip", dir=directory)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for name in sorted(names):
                info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, so that external_attr holds a mode
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                with open(os.path.join(root, *name.split("/")), "rb") as f:
                    zf.writestr(info, f.read(), compresslevel=9)
        # mkstemp made it 0600; give it the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def build(out: str, python: Optional[str] = None, *, optimize: Sequence[int] = (0,)) -> list[str]:
    """Write a Lambda layer zip of the package with bytecode compiled by *python*.

    Args:
        out: The zip file to write (replaced atomically if it exists).
        python: The interpreter to compile with: the same CPython minor version as the
            Lambda runtime. Default: the one running this function.
        optimize: The optimization levels to compile for (0, 1 and/or 2); see the
            module docstring for why the default is level 0 only.

    Returns:
        The names of the zip's entries, sorted (``python/alltoken/...``).

    Raises:
        ValueError: *python* is older than 3.9, not CPython-like, or failed to run;
            *optimize* is empty or holds a level other than 0, 1 or 2.
        FileNotFoundError: *python* does not exist.
        RuntimeError: the target interpreter failed to compile a module.
        OSError: *out* cannot be written.
    """
    levels = sorted(set(optimize))
    if not levels or any(level not in (0, 1, 2) for level in levels):
        raise ValueError(f"optimize must hold levels among 0, 1 and 2, got {optimize!r}")
    python = python or sys.executable
    cache_tag = _probe(python)
    here = os.path.dirname(os.path.abspath(__file__))
    files = _package_files()
    with tempfile.TemporaryDirectory(prefix="alltoken-layer-") as staging:
        package = os.path.join(staging, LAYER_DIR, "alltoken")
        os.makedirs(package)
        for name in files:
            shutil.copyfile(os.path.join(here, name), os.path.join(package, name))
        ddir = f"{UNPACKED_AT}/{LAYER_DIR}/alltoken"
        result = subprocess.run(
            [python, "-S", "-c", _COMPILE, package, ddir, *map(str, levels)],
            capture_output=True, text=True, timeout=300, env=_child_env(), cwd=staging,
        )
        if result.returncode != 0:
            detail = (result.stdout + result.stderr).strip()[-2000:]
            raise RuntimeError(f"{python} failed to compile alltoken: {detail}")
        names = [f"{LAYER_DIR}/alltoken/{name}" for name in files]
        for name in files:
            if not name.endswith(".py"):
                continue
            for level in levels:
                pyc = _pyc_name(name[:-3], cache_tag, level)
                if not os.path.exists(os.path.join(package, *pyc.split("/"))):
                    raise RuntimeError(f"{python} wrote no {pyc} for {name}")
                names.append(f"{LAYER_DIR}/alltoken/{pyc}")
        _write_zip(out, staging, names)
    return sorted(names)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m alltoken.layer OUT.zip [--python PATH] [-O LEVEL]...``.

    Returns:
        0 on success; 1 when the build failed (one line on stderr); argparse exits
        with 2 on a usage error.
    """
    parser = argparse.ArgumentParser(
        prog="python -m alltoken.layer",
        description="Write an AWS Lambda layer zip of alltoken with its bytecode "
        "(python/alltoken/..., unchecked hash-based pycs, reproducible).",
    )
    parser.add_argument("out", metavar="OUT.zip", help="the zip file to write")
    parser.add_argument(
        "--python", metavar="PATH",
        help="the interpreter to compile with: the same CPython minor version as the "
        "Lambda runtime (default: this one, %(default)s)",
        default=sys.executable,
    )
    parser.add_argument(
        "-O", "--optimize", metavar="LEVEL", type=int, choices=(0, 1, 2), action="append",
        help="an optimization level to include bytecode for; repeat for several "
        "(default: 0 only, what Lambda runs)",
    )
    args = parser.parse_args(argv)
    try:
        names = build(args.out, args.python, optimize=args.optimize or (0,))
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"alltoken.layer: error: {exc}", file=sys.stderr)
        return 1
    pycs = [n for n in names if n.endswith(".pyc")]
    modules = sum(1 for n in names if n.endswith(".py"))
    tag = pycs[0].rsplit("/", 1)[1].split(".")[1]
    print(f"wrote {args.out}: {modules} modules, {len(pycs)} {tag} pycs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
