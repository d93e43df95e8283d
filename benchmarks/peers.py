"""The SSE parsers that ``bench_sse.py`` compares, behind one interface.

Each :class:`Adapter` has ``run(chunks)``, which does only what the parser itself does to
turn a list of byte chunks into its own event objects (no JSON, no normalisation: this is
what is timed), and ``normalize(result)``, which turns that result into ``(event type,
data, last event id)`` tuples, comments left out (what is checked, outside the timing).
Every ``run`` builds a fresh parser.

- ``alltoken``: :class:`alltoken.sse.SSEDecoder`, ``feed`` per chunk, then ``end``.
- ``alltoken events()``: the same decoder through ``SSEDecoder.events(chunks)``, which
  takes the chunks as an iterable (as the peers' generators do) and so costs no method
  call for a chunk that only extends the incomplete line.
- ``contract floor``: :func:`contract_floor`, written here: the least a decoder that
  honours alltoken's contract must do for these corpora -- join the chunks, find the
  event separators, decode, and build one :class:`~alltoken.sse.ServerSentEvent` per
  event -- and nothing else: no line handling beyond what the corpus holds, no limits,
  no state across chunks, no checks. Not a parser (it knows the corpora's shapes); the
  speed an incremental decoder that must build the same objects can approach.
- ``plain loop``: :func:`parse_plain`, written here: a tidy, naive parser with a bytes
  buffer, ``split(b"\\n")``, and per-line decoding and field handling.
- the limit row, :func:`limit_row` (not an adapter: it does not parse SSE, so it is not
  checked): ``bytes.split`` of the whole joined corpus on the event separator, and
  ``removeprefix(b"data: ")`` of each piece.
- peers, when importable (never dependencies of alltoken; ``--setup`` installs them into
  ``benchmarks/.venv``):

  - ``httpx-sse``: what ``EventSource.iter_sse`` does over ``Response.iter_text``:
    an incremental UTF-8 decoder (``errors="replace"``, as httpx's ``TextDecoder``),
    ``httpx_sse._decoders.SSELineDecoder``, ``rstrip("\\n")`` and
    ``httpx_sse._decoders.SSEDecoder.decode`` per line.
  - ``openai``: ``openai._streaming.SSEDecoder().iter_bytes(chunks)``, the path of the
    SDK's ``Stream``.
  - ``sseclient-py``: ``sseclient.SSEClient(chunks).events()``.
  - ``launchdarkly``: launchdarkly-eventsource's ``ld_eventsource.reader`` internals, the
    path of its ``SSEClient.events``: ``_SSEReader(_BufferedLineReader.lines_from(chunks))
    .events_and_comments()``.

Commands::

    python3 benchmarks/peers.py --setup    # create benchmarks/.venv with the peers and
                                           # alltoken (editable)
    python3 benchmarks/peers.py            # list the adapters importable here and check
                                           # each one on the corpora
"""

from __future__ import annotations

import codecs
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alltoken.sse import ServerSentEvent, SSEDecoder  # noqa: E402

__all__ = [
    "PEER_PACKAGES",
    "VENV",
    "Adapter",
    "adapters",
    "contract_floor",
    "in_venv",
    "limit_row",
    "parse_plain",
    "setup",
    "venv_python",
]

Event = tuple[str, str, str]  # (event type, data, last event id)

#: What ``--setup`` installs (distribution names), besides alltoken itself.
PEER_PACKAGES = ("openai", "httpx", "httpx-sse", "requests", "sseclient-py",
                 "launchdarkly-eventsource")
VENV = HERE / ".venv"


@dataclass(frozen=True)
class Adapter:
    name: str
    #: chunks -> the parser's own result (a list); the timed part.
    run: Callable[[list[bytes]], list[Any]]
    #: that result -> [(event type, data, last event id)], events only.
    normalize: Callable[[list[Any]], list[Event]]
    #: the distribution and version measured, e.g. "openai 1.54.0"; "" for in-tree code.
    version: str = ""


# -- alltoken ---------------------------------------------------------------------------


def _run_alltoken(chunks: list[bytes]) -> list[Any]:
    decoder = SSEDecoder()
    feed = decoder.feed
    out: list[Any] = []
    for chunk in chunks:
        out += feed(chunk)
    out += decoder.end()
    return out


def _run_alltoken_events(chunks: list[bytes]) -> list[Any]:
    return list(SSEDecoder().events(chunks))


def _norm_alltoken(result: list[Any]) -> list[Event]:
    return [(e.event, e.data, e.id) for e in result if type(e) is ServerSentEvent]


# -- the plain per-line loop --------------------------------------------------------------


def parse_plain(chunks: list[bytes]) -> list[Event]:
    """A tidy per-line parser, the way one is usually written by hand.

    Handles LF and CRLF (not a lone CR), comments, ``event``, ``data``, ``id``; dispatches
    at a blank line; the id persists. Its events are plain tuples, the cheapest object
    there is. Naive on purpose: the whole buffer is re-split on every chunk, so a long line
    fed in small pieces costs time quadratic in its length.
    """
    out: list[Event] = []
    buf = b""
    data: list[str] = []
    event = ""
    last_id = ""
    for chunk in chunks:
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if line.endswith("\r"):
                line = line[:-1]
            if not line:
                if data:
                    out.append((event or "message", "\n".join(data), last_id))
                    data = []
                event = ""
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id" and "\0" not in value:
                last_id = value
    return out


def _identity(result: list[Any]) -> list[Event]:
    return result


# -- the contract floor -------------------------------------------------------------------


def contract_floor(chunks: list[bytes]) -> list[ServerSentEvent]:
    """The least a decoder bound by the contract must do for the corpora of ``corpus.py``.

    Join, split on the blank lines, decode, one ``ServerSentEvent`` per event. A chat
    stream's events are single ``data:`` lines; a large event is an ``event:`` line, an
    ``id:`` line and ``data:`` lines. What follows the last blank line (the cost comment)
    is no event.
    """
    raw = b"".join(chunks)
    eol = b"\r\n" if 13 in raw else b"\n"
    blocks = raw.split(eol + eol)
    del blocks[-1]
    if blocks[0][:6] == b"data: ":
        return [ServerSentEvent(b[6:].decode("utf-8", "replace")) for b in blocks]
    out = []
    for block in blocks:
        event, id_line, *lines = block.split(eol)
        # Line by line: decoding the event at once would widen all of it to 4 bytes a
        # character for one emoji (slower by half, measured).
        out.append(ServerSentEvent(
            "\n".join([line[6:].decode("utf-8", "replace") for line in lines]),
            event[7:].decode("utf-8", "replace"), id_line[4:].decode("utf-8", "replace")))
    return out


# -- the limit row ------------------------------------------------------------------------


def limit_row(chunks: list[bytes], sep: bytes) -> list[bytes]:
    """The physical limit: one C-level split of the whole joined corpus, and the
    ``data: `` prefix stripped from each piece. No line handling, decoding or objects."""
    return [e.removeprefix(b"data: ") for e in b"".join(chunks).split(sep)]


# -- peers --------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return f"{dist} {version(dist)}"
    except Exception:  # metadata is informative only
        return dist


def _httpx_sse() -> Adapter:
    from httpx_sse._decoders import SSEDecoder as HxDecoder
    from httpx_sse._decoders import SSELineDecoder

    def run(chunks: list[bytes]) -> list[Any]:
        # httpx.Response.iter_text: TextDecoder (incremental UTF-8, errors="replace"),
        # empty text dropped; then httpx_sse._api._iter_sse_lines and EventSource.iter_sse.
        text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        lines = SSELineDecoder()
        decode = HxDecoder().decode
        out = []
        for chunk in chunks:
            t = text(chunk)
            if t:
                for line in lines.decode(t):
                    sse = decode(line.rstrip("\n"))
                    if sse is not None:
                        out.append(sse)
        t = text(b"", True)
        for line in [*(lines.decode(t) if t else []), *lines.flush()]:
            sse = decode(line.rstrip("\n"))
            if sse is not None:
                out.append(sse)
        return out

    def normalize(result: list[Any]) -> list[Event]:
        return [(e.event, e.data, e.id) for e in result]

    return Adapter("httpx-sse", run, normalize, _version("httpx-sse"))


def _openai() -> Adapter:
    from openai._streaming import SSEDecoder as OpenAIDecoder

    def run(chunks: list[bytes]) -> list[Any]:
        return list(OpenAIDecoder().iter_bytes(iter(chunks)))

    def normalize(result: list[Any]) -> list[Event]:
        return [(e.event or "message", e.data, e.id or "") for e in result]

    return Adapter("openai", run, normalize, _version("openai"))


def _sseclient() -> Adapter:
    import sseclient

    def run(chunks: list[bytes]) -> list[Any]:
        return list(sseclient.SSEClient(iter(chunks)).events())

    def normalize(result: list[Any]) -> list[Event]:
        return [(e.event or "message", e.data, e.id or "") for e in result]

    return Adapter("sseclient-py", run, normalize, _version("sseclient-py"))


def _launchdarkly() -> Adapter:
    from ld_eventsource.actions import Event as LdEvent
    from ld_eventsource.reader import _BufferedLineReader, _SSEReader

    def run(chunks: list[bytes]) -> list[Any]:
        reader = _SSEReader(_BufferedLineReader.lines_from(iter(chunks)))
        return list(reader.events_and_comments())

    def normalize(result: list[Any]) -> list[Event]:
        return [(e.event, e.data, e.last_event_id or "") for e in result
                if isinstance(e, LdEvent)]

    return Adapter("launchdarkly", run, normalize, _version("launchdarkly-eventsource"))


_PEERS: dict[str, Callable[[], Adapter]] = {
    "httpx-sse": _httpx_sse,
    "openai": _openai,
    "sseclient-py": _sseclient,
    "launchdarkly": _launchdarkly,
}


def adapters(peers: bool = True) -> tuple[list[Adapter], dict[str, str]]:
    """The adapters importable here, and why each missing peer is missing."""
    found = [Adapter("alltoken", _run_alltoken, _norm_alltoken),
             Adapter("alltoken events()", _run_alltoken_events, _norm_alltoken),
             Adapter("contract floor", contract_floor, _norm_alltoken),
             Adapter("plain loop", parse_plain, _identity)]
    missing: dict[str, str] = {}
    if peers:
        for name, make in _PEERS.items():
            try:
                found.append(make())
            except Exception as exc:  # an absent or changed peer is reported, not fatal
                missing[name] = f"{type(exc).__name__}: {exc}"
    return found, missing


# -- the peers' virtual environment -------------------------------------------------------


def venv_python(venv: Path = VENV) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def in_venv(venv: Path = VENV) -> bool:
    """Whether this interpreter is the one of *venv*."""
    try:
        return Path(sys.prefix).resolve() == venv.resolve()
    except OSError:
        return False


def _log(msg: str) -> None:
    print(f"peers: {msg}", file=sys.stderr, flush=True)


def _probe(python: Path) -> dict[str, str]:
    """Which peers *python* cannot import, with the reason."""
    import ast

    code = ("import sys; sys.path.insert(0, sys.argv[1]); import peers; "
            "print(repr(peers.adapters()[1]))")
    r = subprocess.run([str(python), "-c", code, str(HERE)], capture_output=True, text=True)
    if r.returncode != 0:
        return {"all": (r.stderr.strip().splitlines() or ["probe failed"])[-1]}
    missing: dict[str, str] = ast.literal_eval(r.stdout.strip().splitlines()[-1])
    return missing


def _py_version(python: str) -> str:
    r = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                       capture_output=True, text=True)
    return r.stdout.strip()


def setup(venv: Path = VENV, python: str = sys.executable) -> Optional[Path]:
    """Create *venv* for *python* with the peers and alltoken (editable) installed.

    Idempotent: a venv for the same Python version, set up before, whose peers import, is
    left as it is; one for another Python version is rebuilt. Returns the venv's python,
    or None when no venv could be built. Peers that do not install are reported on stderr
    and left out (``bench_sse.py`` lists them as not measured).
    """
    vpy = venv_python(venv)
    stamp = venv / ".alltoken-peers"
    fresh = True
    if vpy.exists():
        have, want = _py_version(str(vpy)), _py_version(python)
        if have == want:
            if stamp.exists() and not _probe(vpy):
                return vpy
            fresh = False  # complete it in place
        else:
            _log(f"{venv} is for Python {have}, not {want}: rebuilding it")
    if fresh:
        _log(f"building {venv} (once; the peers are never dependencies of alltoken)")
        r = subprocess.run([python, "-m", "venv", "--clear", str(venv)])
        if r.returncode != 0 or not vpy.exists():
            _log(f"could not create {venv} (python -m venv exited {r.returncode})")
            return None
    pip = [str(vpy), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if subprocess.run([*pip, *PEER_PACKAGES]).returncode != 0:
        # One package that does not install must not cost the others.
        for package in PEER_PACKAGES:
            if subprocess.run([*pip, package]).returncode != 0:
                _log(f"could not install {package}")
    if subprocess.run([*pip, "-e", str(ROOT)]).returncode != 0:
        if subprocess.run([*pip, "--no-build-isolation", "-e", str(ROOT)]).returncode != 0:
            _log("could not install alltoken in editable mode; bench_sse.py imports it "
                 "from the checkout anyway")
    for name, why in _probe(vpy).items():
        _log(f"{name} not importable: {why}")
    stamp.write_text(" ".join(PEER_PACKAGES) + "\n")
    return vpy


def _check() -> int:
    """List the adapters importable here and check each one on the corpora."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import corpus

    found, missing = adapters()
    status = 0
    for c in [*corpus.corpora(), corpus.one_line_corpus(65536)]:
        chunks = corpus.chunked(c.data)
        for a in found:
            ok = a.normalize(a.run(chunks)) == list(c.events)
            status |= not ok
            print(f"{c.name:<16}{a.name:<14}{'ok' if ok else 'WRONG':<7}{a.version}")
    for name, why in missing.items():
        print(f"{name:<30}not available: {why}")
    return status


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="peers", description=__doc__.split("\n")[0])
    p.add_argument("--setup", action="store_true",
                   help=f"create {VENV} with the peers and alltoken (editable)")
    args = p.parse_args(argv)
    if args.setup:
        vpy = setup()
        if vpy is None:
            return 1
        print(vpy)
        return 0
    return _check()


if __name__ == "__main__":
    sys.exit(main())
