"""The command line: ``alltoken chat`` and ``alltoken serve`` (also ``python -m alltoken``).

Layer 4. Uses the public client API; ``--offline`` and ``serve`` use
:mod:`alltoken.testing`, imported only when asked for.

Exit codes: 0 success, 1 an API or network error (one line on stderr, no traceback),
2 a usage error, 130 interrupted by Ctrl-C (the partial answer stays on screen).
"""

from __future__ import annotations

import argparse
import json
import os
import signal as signals
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any, Optional

from ._client import AllToken
from ._errors import AbortedError, AllTokenError
from ._version import __version__

__all__ = ["main"]

_DIM = "\x1b[2m"
_RESET = "\x1b[0m"
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
OFFLINE_MODEL = "alltoken-local"


class _Spinner:
    """A spinner with elapsed time on a terminal's stderr until :meth:`stop`."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alltoken-spinner", daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(0.08):
            elapsed = time.monotonic() - self._started
            self._out.write(f"\r{_SPINNER[i % len(_SPINNER)]} waiting {elapsed:4.1f}s")
            self._out.flush()
            i += 1

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._out.write("\r\x1b[K")
        self._out.flush()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alltoken", description="Stream answers from the AllToken API.")
    p.add_argument("--version", action="version", version=f"alltoken {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    chat = sub.add_parser("chat", help="stream an answer to a prompt",
                          description="Stream an answer to stdout; reasoning goes to stderr.")
    chat.add_argument("prompt", help="the prompt, or - to read it from stdin")
    chat.add_argument("-m", "--model", default=os.environ.get("ALLTOKEN_MODEL"),
                      help="model id (default: $ALLTOKEN_MODEL; with --offline, "
                           f"{OFFLINE_MODEL})")
    chat.add_argument("--system", help="a system message to send first")
    chat.add_argument("--temperature", type=float, help="sampling temperature")
    chat.add_argument("--max-tokens", type=int, help="the most tokens to generate")
    chat.add_argument("--no-reasoning", action="store_true", help="do not show reasoning")
    chat.add_argument("--json", action="store_true",
                      help="print the raw chunks as JSON lines instead of text")
    chat.add_argument("--offline", action="store_true",
                      help="answer from the bundled local server (no network, no key)")
    chat.add_argument("--base-url", default=None,
                      help="API base URL (default: $ALLTOKEN_BASE_URL or the AllToken API)")
    chat.add_argument("--timeout", type=float, default=60.0,
                      help="connect and read timeout in seconds (default 60)")
    chat.add_argument("--quiet", "-q", action="store_true",
                      help="no spinner and no summary line")

    serve = sub.add_parser("serve", help="run the local AllToken-compatible server",
                           description="Serve the offline model on 127.0.0.1 until Ctrl-C.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    serve.add_argument("--key", default=None, help="require this bearer token")
    serve.add_argument("--pace", type=float, default=0.02,
                       help="seconds between streamed tokens (default 0.02)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with *argv* (default ``sys.argv[1:]``); return the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from .testing import serve

        try:
            serve(host=args.host, port=args.port, api_key=args.key, pace=args.pace)
        except KeyboardInterrupt:
            return 0
        except OSError as exc:
            print(f"alltoken: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        return 0
    return _chat(args)


def _usage_error(message: str) -> int:
    print(f"alltoken: error: {message}", file=sys.stderr)
    return 2


def _chat(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        return _usage_error("the prompt is empty")
    model = args.model or (OFFLINE_MODEL if args.offline else None)
    if not model:
        return _usage_error("choose a model with -m MODEL (or set ALLTOKEN_MODEL)")
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    params: dict[str, Any] = {}
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens

    server = None
    try:
        if args.offline:
            from .testing import LocalServer

            server = LocalServer().start()
            client = AllToken(api_key="offline", base_url=server.base_url, timeout=args.timeout)
        else:
            try:
                client = AllToken(base_url=args.base_url, timeout=args.timeout)
            except (TypeError, ValueError) as exc:
                return _usage_error(str(exc))
            if client._api_key is None:
                return _usage_error("no API key: set ALLTOKEN_API_KEY (or use --offline)")
        with client:
            return _stream(client, model, messages, params, args)
    finally:
        if server is not None:
            server.close()


def _stream(client: AllToken, model: str, messages: list[dict[str, Any]],
            params: dict[str, Any], args: argparse.Namespace) -> int:
    out, err = sys.stdout, sys.stderr
    tty_err = err.isatty()
    abort = threading.Event()
    interrupted = []

    def on_sigint(signum: int, frame: Any) -> None:
        if abort.is_set():  # a second Ctrl-C: stop waiting for a clean abort
            raise KeyboardInterrupt
        interrupted.append(True)
        abort.set()

    previous = signals.signal(signals.SIGINT, on_sigint)
    spinner = _Spinner(err) if tty_err and not args.quiet and not args.json else None
    started = time.monotonic()
    first: Optional[float] = None
    in_reasoning = False
    stream = None
    try:
        stream = client.chat.completions.create(
            model=model, messages=messages, stream=True, signal=abort, **params)
        for chunk in stream:
            if args.json:
                out.write(json.dumps(chunk.raw, ensure_ascii=False) + "\n")
                out.flush()
                continue
            for choice in chunk.choices:
                if choice.index:
                    continue
                delta = choice.delta
                if delta.reasoning_content and not args.no_reasoning:
                    if spinner is not None:
                        spinner.stop()
                    if first is None:
                        first = time.monotonic()
                    err.write(f"{_DIM}{delta.reasoning_content}{_RESET}" if tty_err
                              else delta.reasoning_content)
                    err.flush()
                    in_reasoning = True
                if delta.content:
                    if spinner is not None:
                        spinner.stop()
                    if first is None:
                        first = time.monotonic()
                    if in_reasoning:
                        err.write("\n\n")
                        err.flush()
                        in_reasoning = False
                    out.write(delta.content)
                    out.flush()
        if not args.json and stream.text and not stream.text.endswith("\n"):
            out.write("\n")
            out.flush()
        if spinner is not None:
            spinner.stop()
        if not args.quiet and not args.json:
            err.write(_summary(stream, started, first) + "\n")
        return 0
    except AbortedError:
        if spinner is not None:
            spinner.stop()
        if interrupted:
            out.write("\n")
            out.flush()
            print("alltoken: interrupted", file=err)
            return 130
        raise
    except AllTokenError as exc:
        if spinner is not None:
            spinner.stop()
        if stream is not None and stream.text:
            out.write("\n")
        print(f"alltoken: {type(exc).__name__}: {exc}", file=err)
        return 1
    except BrokenPipeError:
        abort.set()
        # Python would complain again when flushing stdout at exit (Lib/json/tool.py).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    finally:
        if spinner is not None:
            spinner.stop()
        if stream is not None:
            stream.close()
        signals.signal(signals.SIGINT, previous)


def _summary(stream: Any, started: float, first: Optional[float]) -> str:
    elapsed = time.monotonic() - started
    usage = stream.usage
    tokens = usage.completion_tokens if usage is not None else stream.chunks
    parts = [f"{tokens} tokens"]
    if stream.cost is not None:
        parts.append(f"${stream.cost.cost}")
    if first is not None:
        parts.append(f"first token {1000 * (first - started):.0f} ms")
        gen = time.monotonic() - first
        if gen > 0 and tokens:
            parts.append(f"{tokens / gen:.1f} tokens/s")
    parts.append(f"{elapsed:.2f} s")
    return " · ".join(parts)
