"""alltoken.layer: the Lambda layer zip, unpacked read-only, imports from its bytecode.

Each target interpreter (the oldest supported, 3.9, and the newest, 3.13, when found
under pyenv or on PATH; skipped otherwise) compiles a layer; the zip is unpacked into a
clean directory made read-only as Lambda's ``/opt`` is, and a fresh ``python -I -S -v``
of that version imports alltoken from it and streams an answer from the local server.
``-v`` prints ``# <pyc> matches <py>`` for every module loaded from a valid pyc and
``# code object from '<py>'`` for one compiled from source: the test wants the first
for every alltoken module and never the second. The tests run as root in CI, where
``chmod a-w`` stops nothing, so the unpacked files are also compared before and after.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Optional

import pytest

from alltoken import layer


def _find_python(minor: int) -> Optional[str]:
    """The newest CPython 3.<minor> under pyenv, else ``python3.<minor>`` on PATH."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = glob.glob(os.path.join(root, "versions", f"3.{minor}.*", "bin", "python3"))
    found.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/versions/")[1])])
    if found:
        return found[-1]
    return shutil.which(f"python3.{minor}")


def _target(minor: int) -> object:
    python = _find_python(minor)
    return pytest.param(
        python,
        id=f"3.{minor}",
        marks=pytest.mark.skipif(python is None, reason=f"no Python 3.{minor} found"),
    )


TARGETS = [_target(9), _target(13)]

SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
import alltoken
from alltoken import testing as t

with t.LocalServer(pace=0) as server:
    server.enqueue(t.StreamReply([t.content("Hello"), t.content(" from the layer"),
                                  t.finish(), t.usage(), t.done(), t.cost()]))
    with alltoken.stream("hi", model="m", api_key="k", base_url=server.base_url) as answer:
        for tok in answer:
            print(tok, end="")
print()
for name in sorted(sys.modules):
    if name == "alltoken" or name.startswith("alltoken."):
        spec = sys.modules[name].__spec__
        print("module", name, spec.origin, spec.cached)
"""


class Layer(NamedTuple):
    python: str
    zip: Path
    names: list[str]
    site: Path  # the unpacked ``python/`` directory, read-only


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


@pytest.fixture(scope="module", params=TARGETS)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Layer]:
    python = request.param
    out = tmp_path_factory.mktemp("zip") / "alltoken-layer.zip"
    names = layer.build(str(out), python)
    opt = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(out) as zf:
        zf.extractall(opt)
    subprocess.run(["chmod", "-R", "a-w", str(opt)], check=True)
    try:
        yield Layer(python, out, names, opt / "python")
    finally:
        _writable(opt)


class Run(NamedTuple):
    stdout: str
    stderr: str
    before: dict[str, str]
    after: dict[str, str]


@pytest.fixture(scope="module")
def ran(built: Layer) -> Run:
    before = _snapshot(built.site)
    proc = subprocess.run(
        [built.python, "-I", "-S", "-v", "-c", SCRIPT, str(built.site)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Run(proc.stdout, proc.stderr, before, _snapshot(built.site))


def _cache_tag(python: str) -> str:
    return subprocess.run(
        [python, "-I", "-c", "import sys; print(sys.implementation.cache_tag)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


def test_the_zip_holds_every_module_its_pyc_for_the_target_and_py_typed(built: Layer) -> None:
    tag = _cache_tag(built.python)
    sources = sorted(p.name for p in Path(layer.__file__).parent.glob("*.py"))
    expected = {f"python/alltoken/{name}" for name in sources} | {"python/alltoken/py.typed"}
    expected |= {f"python/alltoken/__pycache__/{name[:-3]}.{tag}.pyc" for name in sources}
    with zipfile.ZipFile(built.zip) as zf:
        assert zf.namelist() == sorted(expected) == built.names


def test_the_zip_entries_carry_fixed_times_and_modes(built: Layer) -> None:
    with zipfile.ZipFile(built.zip) as zf:
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == stat.S_IFREG | 0o644


def test_the_pycs_are_unchecked_hash_based(built: Layer) -> None:
    # PEP 552: the flags word after the magic number; 0b01 hash-based, 0b10 check source.
    with zipfile.ZipFile(built.zip) as zf:
        for name in zf.namelist():
            if name.endswith(".pyc"):
                flags = int.from_bytes(zf.read(name)[4:8], "little")
                assert flags == 0b01, name


def test_the_unpacked_read_only_layer_streams_an_answer_from_the_local_server(ran: Run) -> None:
    assert ran.stdout.splitlines()[0] == "Hello from the layer"


def test_every_alltoken_module_is_loaded_from_the_layers_pyc(built: Layer, ran: Run) -> None:
    modules = [line.split() for line in ran.stdout.splitlines() if line.startswith("module ")]
    names = {m[1] for m in modules}
    assert {"alltoken", "alltoken.testing", "alltoken.sse", "alltoken._client"} <= names
    for _, name, origin, cached in modules:
        assert origin.startswith(str(built.site)), (name, origin)
        assert f"# {cached} matches {origin}" in ran.stderr, name
    compiled = [
        line for line in ran.stderr.splitlines()
        if line.startswith("# code object from") and str(built.site) in line
        and not line.rstrip("'").endswith(".pyc")
    ]
    assert compiled == []


def test_importing_from_the_layer_writes_nothing(ran: Run) -> None:
    assert ran.after == ran.before


def test_a_second_build_gives_the_same_bytes(built: Layer, tmp_path: Path) -> None:
    again = tmp_path / "again.zip"
    layer.build(str(again), built.python)
    assert again.read_bytes() == built.zip.read_bytes()


def test_optimization_levels_add_opt_pycs_that_python_oo_loads(tmp_path: Path) -> None:
    out = tmp_path / "layer.zip"
    names = layer.build(str(out), optimize=(2, 0))
    tag = sys.implementation.cache_tag
    assert f"python/alltoken/__pycache__/sse.{tag}.pyc" in names
    assert f"python/alltoken/__pycache__/sse.{tag}.opt-2.pyc" in names
    assert not any(".opt-1." in n for n in names)
    with zipfile.ZipFile(out) as zf:
        zf.extractall(tmp_path)
    site = tmp_path / "python"
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-OO", "-v", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import alltoken.sse", str(site)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    pyc = site / "alltoken" / "__pycache__" / f"sse.{tag}.opt-2.pyc"
    assert f"# {pyc} matches {site / 'alltoken' / 'sse.py'}" in proc.stderr


@pytest.mark.parametrize("optimize", [(), (3,), (0, -1)])
def test_build_rejects_unknown_optimization_levels(
    optimize: tuple[int, ...], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="optimize"):
        layer.build(str(tmp_path / "x.zip"), optimize=optimize)
    assert list(tmp_path.iterdir()) == []


def test_main_reports_a_missing_interpreter_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert layer.main([str(tmp_path / "x.zip"), "--python", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("alltoken.layer: error: ") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_main_refuses_an_interpreter_older_than_3_9(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _find_python(8)
    if old is None:
        pytest.skip("no Python 3.8 found")
    assert layer.main([str(tmp_path / "x.zip"), "--python", old]) == 1
    assert "is Python 3.8; alltoken needs 3.9 or newer" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_main_says_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "layer.zip"
    assert layer.main([str(out)]) == 0
    tag = sys.implementation.cache_tag
    modules = len(list(Path(layer.__file__).parent.glob("*.py")))
    assert capsys.readouterr().out == f"wrote {out}: {modules} modules, {modules} {tag} pycs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["layer.zip"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
