"""What the command line prints while a stream runs: the answer, the reasoning, the
spinner and the summary line.

Layer 4, a helper of :mod:`alltoken.cli`; uses no other module of the package at run
time (the stream and its chunks arrive as arguments).

Two promises hold whatever the server sends and wherever the output goes:

* **No traceback for a character.** A gateway may split an astral character (an emoji)
  into its two UTF-16 halves across chunks (``"\\ud83d"`` then ``"\\ude00"``); a
  :class:`SurrogateJoiner` holds a trailing high surrogate back until the next piece
  arrives and joins the pair. A half that never finds its partner becomes U+FFFD.
  What stdout's encoding cannot show (an emoji under ``PYTHONIOENCODING=ascii``, a
  cp1252 console) is written as ``?`` (the codec's ``replace``): the rest of the
  answer still arrives, and a reader sees one mark per character lost, not an escape
  sequence in the middle of prose. stderr keeps Python's own ``backslashreplace``
  (``\\U0001f914``), the convention for diagnostics; :class:`Output` still replaces
  there, should a stderr be strict. ``--json`` output stays lossless and valid JSON:
  a line the stream cannot encode is written with ``\\uXXXX`` escapes instead.
* **Escape codes only on a terminal that wants them.** The dim codes around reasoning
  and the spinner appear only when stderr is a terminal, ``NO_COLOR`` is unset or
  empty (https://no-color.org) and ``TERM`` is not ``dumb``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from typing import IO, Any, Optional

__all__ = ["JSONRenderer", "Output", "OutputError", "Spinner", "SurrogateJoiner",
           "TextRenderer", "wants_escapes"]

_DIM = "\x1b[2m"
_RESET = "\x1b[0m"
_CLEAR_LINE = "\r\x1b[K"
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_ASCII_SPINNER = "|/-\\"
_SURROGATE = re.compile("[\ud800-\udfff]")
_HIGH_SURROGATES = ("\ud800", "\udbff")


class OutputError(Exception):
    """Writing to stdout or stderr failed: the reader went away (:attr:`broken_pipe`), or
    a full disk, an I/O error, a closed file; ``str()`` is the one line to show.

    Attributes:
        output: The :class:`Output` that failed.
        broken_pipe: Whether the reader closed the pipe (``head`` had enough).
    """

    def __init__(self, output: Output, exc: Exception) -> None:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        super().__init__(f"cannot write to {output.name}: {reason}")
        self.output = output
        self.broken_pipe = isinstance(exc, BrokenPipeError)


class Output:
    """One of the standard streams as the command line writes to it.

    What the stream's encoding cannot represent and its own error handler does not
    take care of (stdout's is ``strict``) is written with the codec's ``replace``
    handler (``?``) instead of raising ``UnicodeEncodeError``. Any other ``OSError``
    (and the ``ValueError`` of a closed file) becomes :class:`OutputError`.
    """

    def __init__(self, stream: IO[str], name: str) -> None:
        self.stream = stream
        self.name = name
        self.encoding: str = getattr(stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> None:
        try:
            try:
                self.stream.write(text)
            except UnicodeEncodeError:
                # TextIOWrapper encodes the whole text before buffering any of it, so the
                # failed write wrote nothing and the replaced text is not a duplicate.
                self.stream.write(self.replaced(text))
            self.stream.flush()
        except (OSError, ValueError) as exc:
            if isinstance(exc, UnicodeError):
                raise
            raise OutputError(self, exc) from exc

    def replaced(self, text: str) -> str:
        """*text* with what this stream cannot encode replaced by ``?``."""
        return text.encode(self.encoding, "replace").decode(self.encoding, "replace")

    def can_show(self, text: str) -> bool:
        """Whether this stream's encoding represents *text* as it is."""
        try:
            text.encode(self.encoding)
        except (UnicodeEncodeError, LookupError):
            return False
        return True

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False


def wants_escapes(err: Output, environ: Mapping[str, str]) -> bool:
    """Whether dim reasoning and the spinner may go to *err*: a terminal, ``NO_COLOR``
    unset or empty (no-color.org: "when present and not an empty string"), and a
    ``TERM`` other than ``dumb``."""
    return err.isatty() and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


class SurrogateJoiner:
    """Rejoins UTF-16 surrogate pairs split across the pieces of one text.

    :meth:`feed` returns what can be shown now: a trailing high surrogate is held back
    until the next piece; pairs are joined into their character; a lone surrogate
    (never encodable) becomes U+FFFD. Pieces without surrogates pass through unchanged,
    at the cost of one regex search.
    """

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        if self._held:
            piece, self._held = self._held + piece, ""
        elif not _SURROGATE.search(piece):
            return piece
        if piece and _HIGH_SURROGATES[0] <= piece[-1] <= _HIGH_SURROGATES[1]:
            piece, self._held = piece[:-1], piece[-1]
        joined = piece.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        return _SURROGATE.sub("\ufffd", joined)

    def end(self) -> str:
        """What is still held back (a high surrogate whose partner never came) as U+FFFD."""
        held, self._held = self._held, ""
        return "\ufffd" if held else ""


class Spinner:
    """A spinner with elapsed time on a terminal's stderr until :meth:`stop`."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._frames = _SPINNER if out.can_show(_SPINNER) else _ASCII_SPINNER
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alltoken-spinner", daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(0.08):
            elapsed = time.monotonic() - self._started
            try:
                self._out.write(f"\r{self._frames[i % len(self._frames)]} waiting {elapsed:4.1f}s")
            except OutputError:
                return  # the terminal went away; the main thread will find out itself
            i += 1

    def stop(self, *, clear: bool = True) -> None:
        """Stop and, with *clear*, clear the line. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        if clear:
            self._out.write(_CLEAR_LINE)


class TextRenderer:
    """Choice 0 of a stream as text: the answer to *out*, the reasoning to *err*
    (dimmed when *escapes*), a spinner until the first token, and the summary line.

    Args:
        out: Where the answer goes.
        err: Where reasoning, the spinner and the summary go.
        reasoning: Whether to show the reasoning.
        escapes: Whether escape codes may be written to *err* (see :func:`wants_escapes`).
        spinner: Whether to show the spinner (only with *escapes*).
        summary: Whether to end with the summary line.
    """

    def __init__(self, out: Output, err: Output, *, reasoning: bool, escapes: bool,
                 spinner: bool, summary: bool) -> None:
        self._out, self._err = out, err
        self._show_reasoning = reasoning
        self._escapes = escapes
        self._summary = summary
        self._started = time.monotonic()
        self._first: Optional[float] = None
        self._answer = SurrogateJoiner()
        self._thoughts = SurrogateJoiner()
        self._in_reasoning = False
        self._out_open = False  # the answer's last line has no line feed yet
        self._err_open = False  # likewise for the reasoning
        self._spinner = Spinner(err) if spinner and escapes else None

    def chunk(self, chunk: Any) -> None:
        """Show one ``ChatCompletionChunk``."""
        for choice in chunk.choices:
            if choice.index:
                continue
            delta = choice.delta
            if delta.reasoning_content and self._show_reasoning:
                self._reasoning(delta.reasoning_content)
            if delta.content:
                self._content(delta.content)

    def _token(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
        if self._first is None:
            self._first = time.monotonic()

    def _reasoning(self, piece: str) -> None:
        self._token()
        self._write_reasoning(self._thoughts.feed(piece))
        self._in_reasoning = True

    def _write_reasoning(self, text: str) -> None:
        if text:
            self._err.write(f"{_DIM}{text}{_RESET}" if self._escapes else text)
            self._err_open = not text.endswith("\n")

    def _content(self, piece: str) -> None:
        self._token()
        if self._in_reasoning:
            self._end_reasoning()
            self._err.write("\n\n")
            self._err_open = False
        text = self._answer.feed(piece)
        if text:
            self._out.write(text)
            self._out_open = not text.endswith("\n")

    def _end_reasoning(self) -> None:
        self._write_reasoning(self._thoughts.end())
        self._in_reasoning = False

    def stop(self) -> None:
        """End the output where it stands (the stream ended, failed or was interrupted):
        stop the spinner, write what was held back and finish the open lines, so a
        message on stderr starts a line of its own."""
        if self._spinner is not None:
            self._spinner.stop()
        if self._in_reasoning:
            self._end_reasoning()
        rest = self._answer.end()
        if rest:
            self._out.write(rest)
            self._out_open = True
        if self._out_open:
            self._out.write("\n")
            self._out_open = False
        if self._err_open:
            self._err.write("\n")
            self._err_open = False

    def close(self) -> None:
        """Stop the spinner without writing: the output may be what failed."""
        if self._spinner is not None:
            self._spinner.stop(clear=False)

    def finish(self, stream: Any) -> None:
        """The stream was read to its end: :meth:`stop`, then the summary line."""
        self.stop()
        if self._summary:
            self._err.write(self._summary_line(stream) + "\n")

    def _summary_line(self, stream: Any) -> str:
        """Tokens, cost, time to first token, tokens/s and the time in all, from the
        stream's own ``timings`` (seconds since the request was made), and the number of
        requests when a retry was needed."""
        usage = stream.usage
        tokens = usage.completion_tokens if usage is not None else stream.chunks
        parts = [f"{tokens} tokens"]
        if stream.cost is not None:
            parts.append(f"${stream.cost.cost}")
        t = stream.timings
        end = t.end if t.end is not None else time.monotonic() - self._started
        if t.first_token is not None:
            parts.append(f"first token {1000 * t.first_token:.0f} ms")
            gen = end - t.first_token
            if gen > 0 and tokens:
                parts.append(f"{tokens / gen:.1f} tokens/s")
        parts.append(f"{end:.2f} s")
        if t.attempts > 1:
            parts.append(f"{t.attempts} requests")
        sep = " · " if self._err.can_show(" · ") else " - "
        return sep.join(parts)


class JSONRenderer:
    """Each chunk as one line of JSON, as received (``--json``).

    Non-ASCII text is written as itself where *out* can encode the line, else the line
    is written with ``\\uXXXX`` escapes: the same JSON value, never a replacement. Lone
    surrogates from the server stay escapes, so every line is valid JSON.
    """

    def __init__(self, out: Output) -> None:
        self._out = out

    def chunk(self, chunk: Any) -> None:
        line = json.dumps(chunk.raw, ensure_ascii=False)
        if not line.isascii() and not self._out.can_show(line):
            line = json.dumps(chunk.raw, ensure_ascii=True)
        self._out.write(line + "\n")

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass

    def finish(self, stream: Any) -> None:
        pass

