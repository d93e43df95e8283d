"""The command line: ``alltoken chat`` and ``alltoken serve`` (also ``python -m alltoken``).

Layer 4. Uses the public client API; ``--offline`` and ``serve`` use
:mod:`alltoken.testing`, imported only when asked for. What is printed while a stream
runs lives in :mod:`alltoken._cli_render`; the interactive conversation (``chat``
without a prompt on a terminal) in :mod:`alltoken._repl`; the recording proxy of
``chat --record FILE`` in :mod:`alltoken._record` (``serve --replay FILE`` sends a
recording back through :class:`alltoken.testing.ReplayReply`).

Exit codes: 0 success (also when the reader of stdout went away, ``| head``), 1 an API,
network or output error (one line on stderr, no traceback), 2 a usage error (one line),
130 interrupted by Ctrl-C (the partial answer stays on screen).

Behaviour worth knowing:

* Answer text stdout's encoding cannot show is written as ``?`` (stderr keeps Python's
  ``backslashreplace``); ``--json`` lines stay valid JSON (``\\uXXXX`` escapes). A
  prompt on stdin must be text in stdin's encoding (UTF-8, or what
  ``PYTHONIOENCODING`` says), and arguments text in the locale's: anything else is a
  usage error, never a prompt with pieces silently replaced.
* ``NO_COLOR`` (non-empty) or ``TERM=dumb`` turns escape codes off: no dim reasoning
  and no spinner.
* Ctrl-C handling is installed only in the main thread and only when SIGINT is not
  ignored: :func:`main` works from a worker thread, and a background job that was
  started with SIGINT ignored keeps running.
* With stdout or stderr closed (``>&-``), nothing is sent: an error on the stream that
  is left, exit 1.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import math
import os
import signal as signals
import sys
import threading
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn, Optional, Union

from ._cli_render import JSONRenderer, Output, OutputError, TextRenderer, wants_escapes
from ._client import AllToken
from ._errors import AbortedError, AllTokenError
from ._version import __version__

if TYPE_CHECKING:
    from ._repl import Conversation

__all__ = ["main"]

OFFLINE_MODEL = "alltoken-local"
#: The longest --timeout: socket and lock waits overflow the platform's clock types
#: beyond it (``--timeout 1e12`` raised OverflowError from deep in the transport).
_MAX_TIMEOUT = threading.TIMEOUT_MAX

_Renderer = Union[TextRenderer, JSONRenderer]


class _Exit(Exception):
    """End the command with exit status *code*, after *message* (one line) on stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _usage(message: str) -> _Exit:
    return _Exit(2, f"alltoken: error: {message}")


# -- arguments ----------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``alltoken chat: error: ...``, no usage block),
    written only where a stderr exists."""

    def error(self, message: str) -> NoReturn:
        _say(sys.stderr, f"{self.prog}: error: {message} (see {self.prog} --help)")
        raise SystemExit(2)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _timeout(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    if value > _MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"must be at most {_MAX_TIMEOUT:.0f} seconds, got {text!r}")
    return value


def _pace(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def _serve_pace(text: str) -> Union[float, str]:
    if text in ("original", "none"):
        return text
    try:
        return _pace(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected seconds, 'original' or 'none', got {text!r}") from None


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="alltoken", description="Stream answers from the AllToken API.")
    p.add_argument("--version", action="version", version=f"alltoken {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    chat = sub.add_parser(
        "chat", help="stream an answer to a prompt, or hold a conversation",
        description="Stream an answer to stdout; reasoning goes to stderr. Without a "
                    "prompt on a terminal, start a conversation (/help lists its "
                    "commands; Ctrl-C stops an answer, Ctrl-D exits).")
    chat.add_argument("prompt", nargs="?", default=None,
                      help="the prompt, or - to read it from stdin; leave it out on a "
                           "terminal for a conversation")
    chat.add_argument("-m", "--model", default=os.environ.get("ALLTOKEN_MODEL"),
                      help="model id (default: $ALLTOKEN_MODEL; with --offline, "
                           f"{OFFLINE_MODEL})")
    chat.add_argument("--system", help="a system message to send first")
    chat.add_argument("--temperature", type=_number, help="sampling temperature")
    chat.add_argument("--max-tokens", type=int, help="the most tokens to generate")
    chat.add_argument("--no-reasoning", action="store_true", help="do not show reasoning")
    chat.add_argument("--json", action="store_true",
                      help="print the raw chunks as JSON lines instead of text")
    chat.add_argument("--offline", action="store_true",
                      help="answer from the bundled local server (no network, no key)")
    chat.add_argument("--base-url", default=None,
                      help="API base URL (default: $ALLTOKEN_BASE_URL or the AllToken API)")
    chat.add_argument("--timeout", type=_timeout, default=60.0,
                      help="connect and read timeout in seconds (default 60)")
    chat.add_argument("--quiet", "-q", action="store_true",
                      help="no spinner and no summary line")
    chat.add_argument("--record", metavar="FILE", default=None,
                      help="save the response as received (status, headers without "
                           "secrets, body bytes and their timing) to FILE, for "
                           "'alltoken serve --replay FILE' and alltoken.testing")

    serve = sub.add_parser("serve", help="run the local AllToken-compatible server",
                           description="Serve the offline model on 127.0.0.1 until Ctrl-C.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8765,
                       help="port (default 8765; 0 = any)")
    serve.add_argument("--key", default=None, help="require this bearer token")
    serve.add_argument("--pace", type=_serve_pace, default=None,
                       help="seconds between streamed tokens (default 0.02); with "
                            "--replay, 'original' (the default: the recorded timing) "
                            "or 'none' (as fast as possible)")
    serve.add_argument("--replay", metavar="FILE", default=None,
                       help="answer every chat request with the response recorded "
                            "in FILE by 'alltoken chat --record', byte for byte")
    return p


# -- the standard streams and error reporting ----------------------------------------------

def _say(stream: Optional[IO[str]], line: str) -> None:
    """Write *line* to *stream* if there is one and it works: the last word of a failing
    command must not fail in turn."""
    if stream is None:
        return
    try:
        Output(stream, "").write(line + "\n")
    except OutputError:
        pass


def _standard_streams() -> Optional[tuple[Output, Output]]:
    """stdout and stderr, or None after saying on the one left which is missing.

    Python sets ``sys.stdout`` to None when file descriptor 1 was closed at start-up
    (``>&-``); an answer would go nowhere, so nothing is sent."""
    out, err = sys.stdout, sys.stderr
    if out is not None and err is not None:
        return Output(out, "stdout"), Output(err, "stderr")
    missing = "stdout" if out is None else "stderr"
    _say(err if out is None else out, f"alltoken: error: {missing} is closed; "
                                      "redirect it to a file or /dev/null instead")
    return None


def _discard(output: Output) -> None:
    """Point *output*'s file descriptor at /dev/null, so that Python's flush at exit does
    not report the same failure again (``Lib/json/tool.py`` does this for stdout)."""
    try:
        fd = output.stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


def _one_line(exc: AllTokenError) -> str:
    text = " ".join(str(exc).splitlines())
    return f"alltoken: {type(exc).__name__}: {text}"


# -- Ctrl-C ----------------------------------------------------------------------------------

class _Interrupt:
    """Ctrl-C while a request runs: the first sets :attr:`signal`, which aborts the
    stream (what arrived stays on screen); a second raises ``KeyboardInterrupt``.

    The handler is installed only where it can and should be: in the main thread
    (``signal.signal`` raises ``ValueError`` elsewhere), and not when SIGINT is ignored
    (a background job of a non-interactive shell, ``nohup``: Ctrl-C is not meant for
    it), nor over a handler installed outside Python (it could not be put back).
    """

    def __init__(self) -> None:
        self.signal = threading.Event()
        self.happened = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is not threading.main_thread():
            return self
        current = signals.getsignal(signals.SIGINT)
        if current is None or current == signals.SIG_IGN:
            return self
        self._previous = signals.signal(signals.SIGINT, self._on_sigint)
        self._installed = True
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.signal.is_set():  # a second Ctrl-C: stop waiting for a clean abort
            raise KeyboardInterrupt
        self.happened = True
        self.signal.set()

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signals.signal(signals.SIGINT, self._previous)
            self._installed = False


# -- the commands ---------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with *argv* (default ``sys.argv[1:]``); return the exit code.

    Args:
        argv: The arguments, without the program name.

    Returns:
        0 success, 1 an API, network or output error, 2 a usage error, 130 Ctrl-C.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, a usage error
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    streams = _standard_streams()
    if streams is None:
        return 1
    out, err = streams
    try:
        if args.command == "serve":
            return _serve(args)
        return _chat(args, out, err)
    except _Exit as exc:
        if exc.message:
            _say(err.stream, exc.message)
        return exc.code
    except KeyboardInterrupt:  # before the request (reading stdin), or a second Ctrl-C
        _say(err.stream, "alltoken: interrupted")
        return 130
    except OutputError as exc:
        _discard(exc.output)
        if exc.broken_pipe:  # the reader has gone (| head): nothing more to say
            return 0
        _say((out if exc.output is err else err).stream, f"alltoken: error: {exc}")
        return 1


def _serve(args: argparse.Namespace) -> int:
    from .testing import ReplayReply, serve

    pace = args.pace
    replay = None
    if args.replay is not None:
        if pace not in (None, "original", "none", 0):
            raise _usage("with --replay, --pace is 'original' or 'none'")
        try:
            replay = ReplayReply.load(args.replay, pace="none" if pace in ("none", 0)
                                      else "original")
        except (OSError, ValueError) as exc:
            raise _Exit(1, f"alltoken: error: {_reason(exc)}") from None
        pace = 0.0
    elif pace == "original":
        raise _usage("--pace original needs --replay FILE")
    elif pace is None or pace == "none":
        pace = 0.02 if pace is None else 0.0
    try:
        serve(host=args.host, port=args.port, api_key=args.key, pace=pace, replay=replay)
    except KeyboardInterrupt:
        return 0
    except (OSError, OverflowError) as exc:
        raise _Exit(1, f"alltoken: cannot serve on {args.host}:{args.port}: "
                       f"{getattr(exc, 'strerror', None) or exc}") from None
    return 0


def _reason(exc: BaseException) -> str:
    """*exc* as the end of a one-line message (an OSError as its file and strerror)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return " ".join(str(exc).splitlines())


def _read_prompt() -> str:
    """The prompt from stdin, decoded strictly with stdin's encoding.

    A prompt that is not text in that encoding (a Latin-1 file under UTF-8) is a usage
    error rather than a prompt with U+FFFD in it: the model would answer a question the
    user did not ask, and be paid for it. ``iconv`` or ``PYTHONIOENCODING`` fixes it.
    """
    stdin = sys.stdin
    if stdin is None:
        raise _usage("the prompt is '-' but stdin is closed")
    encoding = getattr(stdin, "encoding", None) or "utf-8"
    buffer = getattr(stdin, "buffer", None)
    try:
        if buffer is None:  # a text-only stand-in for stdin (an IDE, a test)
            return str(stdin.read())
        data: bytes = buffer.read()
    except UnicodeDecodeError as exc:
        raise _usage(_not_text(exc)) from None
    except OSError as exc:
        raise _Exit(1, f"alltoken: error: cannot read the prompt from stdin: "
                       f"{exc.strerror or exc}") from None
    codec = codecs.lookup(encoding).name
    if codec == "utf-8":
        codec = "utf-8-sig"  # a byte order mark from an editor is not part of the prompt
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _usage(_not_text(exc)) from None
    return text.replace("\r\n", "\n") if os.name == "nt" else text  # as stdin.read() does


def _not_text(exc: UnicodeDecodeError) -> str:
    name = "UTF-8" if exc.encoding.startswith("utf-8") else exc.encoding
    return (f"stdin is not {name} text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); convert it to {name} or set PYTHONIOENCODING to its encoding")


def _checked_text(value: str, what: str) -> str:
    """*value* from the command line or the environment, if it is text.

    Python decodes arguments that are not in the locale's encoding with
    ``surrogateescape`` (a Latin-1 byte under UTF-8 becomes U+DCxx); such a string
    cannot be sent as JSON, so it is a usage error as it is on stdin."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise _usage(f"{what} is not text in the locale's encoding ({byte} at "
                     f"character {exc.start})") from None
    return value


def _model(args: argparse.Namespace) -> str:
    model = args.model or (OFFLINE_MODEL if args.offline else None)
    if not model:
        raise _usage("choose a model with -m MODEL (or set ALLTOKEN_MODEL)")
    return _checked_text(model, "the model")


def _system(args: argparse.Namespace) -> Optional[str]:
    if not args.system:
        return None
    return _checked_text(args.system, "the system message")


def _params(args: argparse.Namespace) -> dict[str, Any]:
    """The body fields besides the model and the messages."""
    params: dict[str, Any] = {}
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    return params


def _request(args: argparse.Namespace) -> dict[str, Any]:
    """The request body (without ``stream``) from the arguments and the prompt."""
    if args.prompt == "-":
        prompt = _read_prompt()
    else:
        prompt = _checked_text(args.prompt, "the prompt")
    if not prompt.strip():
        raise _usage("the prompt is empty")
    model = _model(args)
    messages: list[dict[str, Any]] = []
    system = _system(args)
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    return {"model": model, "messages": messages, **_params(args)}


def _interactive(args: argparse.Namespace) -> bool:
    """Whether to hold a conversation: no prompt given, and stdin is a terminal.

    Without a prompt and with stdin not a terminal (a pipe, a file, closed) the command
    stays a one-shot one and asks for the prompt, as before conversations existed:
    ``chat -`` reads it from stdin."""
    if args.prompt is not None:
        return False
    stdin = sys.stdin
    try:
        tty = stdin is not None and stdin.isatty()
    except (OSError, ValueError):
        tty = False
    if not tty:
        raise _usage("give a prompt, or - to read it from stdin (a conversation needs "
                     "stdin to be a terminal)")
    if args.record is not None:
        raise _usage("--record saves one answer: give a prompt")
    return True


def _chat(args: argparse.Namespace, out: Output, err: Output) -> int:
    conversation = None
    body: dict[str, Any] = {}
    if _interactive(args):
        from ._repl import Conversation

        conversation = Conversation(_model(args), _system(args), _params(args))
    else:
        body = _request(args)
    if args.offline:
        from .testing import LocalServer

        try:
            server = LocalServer().start()
        except OSError as exc:
            raise _Exit(1, f"alltoken: cannot start the offline server: {exc}") from None
        try:
            # proxy=False: the server is on loopback; an HTTP_PROXY in the environment
            # is for the real API and cannot reach it.
            with AllToken(api_key="offline", base_url=server.base_url,
                          timeout=args.timeout, proxy=False) as client:
                return _converse_or_stream(client, conversation, body, args, out, err)
        finally:
            server.close()
    try:
        client = AllToken(base_url=args.base_url, timeout=args.timeout)
    except (TypeError, ValueError) as exc:
        raise _usage(str(exc)) from None
    if client._api_key is None:
        raise _usage("no API key: set ALLTOKEN_API_KEY (or use --offline)")
    with client:
        return _converse_or_stream(client, conversation, body, args, out, err)


def _converse_or_stream(client: AllToken, conversation: Optional[Conversation],
                        body: dict[str, Any], args: argparse.Namespace,
                        out: Output, err: Output) -> int:
    if conversation is not None:
        from . import _repl

        return _repl.run(client, conversation, args, out, err, offline=args.offline)
    if args.record is not None:
        return _recorded(client, body, args, out, err)
    return _stream(client, body, args, out, err)


def _renderer(args: argparse.Namespace, out: Output, err: Output) -> _Renderer:
    if args.json:
        return JSONRenderer(out)
    return TextRenderer(out, err, reasoning=not args.no_reasoning,
                        escapes=wants_escapes(err, os.environ),
                        spinner=not args.quiet, summary=not args.quiet)


def _stream(client: AllToken, body: dict[str, Any], args: argparse.Namespace,
            out: Output, err: Output) -> int:
    """Stream one answer through a renderer; Ctrl-C aborts it (exit 130)."""
    with _Interrupt() as interrupt:
        renderer = _renderer(args, out, err)
        stream = None
        try:
            stream = client.chat.completions.create(stream=True, signal=interrupt.signal,
                                                    **body)
            for chunk in stream:
                renderer.chunk(chunk)
            renderer.finish(stream)
            return 0
        except AllTokenError as exc:
            renderer.stop()
            if isinstance(exc, AbortedError) and interrupt.happened:
                raise _Exit(130, "alltoken: interrupted") from None
            raise _Exit(1, _one_line(exc)) from None
        except KeyboardInterrupt:
            renderer.stop()
            raise
        finally:
            renderer.close()
            if stream is not None:
                stream.close()


def _recorded(client: AllToken, body: dict[str, Any], args: argparse.Namespace,
              out: Output, err: Output) -> int:
    """:func:`_stream` through a recording proxy (:mod:`alltoken._record`); the
    response is saved to ``--record FILE`` even when the request failed or was
    interrupted (the recording then says it is incomplete), and the line saying so
    comes after the error's."""
    from ._record import Recorder

    path = args.record
    partial = f"{path}.partial"
    try:  # before paying for a request: can the file be written at all?
        target = open(partial, "w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise _Exit(1, f"alltoken: error: cannot record: {_reason(exc)}") from None
    failure: Optional[_Exit] = None
    try:
        try:
            recorder = Recorder(client.base_url, timeout=args.timeout).start()
        except (OSError, ValueError) as exc:
            raise _Exit(1, f"alltoken: error: cannot record: {_reason(exc)}") from None
        try:
            # The same key and timeout; the recorder is on loopback (no proxy), and it
            # reaches the server directly.
            with AllToken(api_key=client._api_key, base_url=recorder.base_url,
                          timeout=args.timeout, proxy=False) as through:
                return _stream(through, body, args, out, err)
        except _Exit as exc:
            failure = exc
            if exc.code == 1 and recorder.error and recorder.recording is None:
                # The client only saw the recorder hang up; this is what happened.
                failure = _Exit(1, f"alltoken: APIConnectionError: {recorder.error}")
            _say(err.stream, failure.message)
            raise _Exit(failure.code) from None
        finally:
            recorder.close()
            text = recorder.dumps()
            if text is not None:
                target.write(text)
                target.close()
                os.replace(partial, path)
                if not args.quiet or failure is not None:
                    rec = recorder.recording
                    assert rec is not None
                    state = "" if rec.complete else " (incomplete)"
                    _say(err.stream, f"alltoken: recorded {rec.status} {rec.reason}, "
                                     f"{len(rec.body)} bytes{state} to {path}")
            else:
                _say(err.stream, f"alltoken: nothing recorded to {path}: no response")
    finally:
        if not target.closed:
            target.close()
            with contextlib.suppress(OSError):
                os.remove(partial)
