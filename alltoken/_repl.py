"""The interactive chat: ``alltoken chat`` with no prompt on a terminal.

Layer 4, a helper of :mod:`alltoken.cli` (which imports it only when a conversation
starts); uses the public client API and the command line's renderers.

A conversation is a loop: read a line, send the whole conversation so far (the system
message, then every user and assistant message), stream the answer through the same
renderer as a one-shot ``chat``, append both messages, and read the next line.

Keys and commands:

* Ctrl-C while an answer streams aborts that request at once (its abort ``signal`` is
  set); the part of the answer that arrived stays on screen **and in the conversation**,
  so the next question can refer to it. A turn that produced no answer text (aborted
  while waiting, or an API error) is not kept: the model never saw it, and an empty
  assistant message is refused by some providers.
* Ctrl-C at the prompt discards the line being typed; Ctrl-D (end of file) on an empty
  line ends the conversation with exit status 0.
* ``/reset``, ``/model [NAME]``, ``/system [TEXT]``, ``/help``, ``/exit``; ``//text``
  sends ``/text``. An unknown command prints a one-line hint and sends nothing.

Line editing and in-session history come from :mod:`readline` when Python has it (it is
optional: some builds lack it, Windows has none); without it a line is read with the
terminal's own line editing. Nothing is written to disk.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

from . import AbortedError, AllToken, AllTokenError  # the public API: not the modules
from ._cli_render import Output

__all__ = ["Conversation", "run"]

PROMPT = "> "

HELP = """\
/reset         forget the conversation (the system message stays)
/model [NAME]  switch to model NAME, or show the current one
/system [TEXT] set the system message, or remove it
/help          show this list
/exit          end the conversation (as does Ctrl-D on an empty line)
Ctrl-C stops an answer (what arrived is kept); //text sends "/text"."""


class Conversation:
    """The messages of one conversation and the settings of its next request.

    Args:
        model: The model to ask.
        system: The system message, sent first in every request (None: none).
        params: Other body fields (``temperature``, ``max_tokens``).
    """

    def __init__(self, model: str, system: Optional[str], params: dict[str, Any]) -> None:
        self.model = model
        self.system = system
        self.params = params
        self.history: list[dict[str, str]] = []

    def body(self, prompt: str) -> dict[str, Any]:
        """The request body for *prompt* after the conversation so far."""
        messages: list[dict[str, str]] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages += self.history
        messages.append({"role": "user", "content": prompt})
        return {"model": self.model, "messages": messages, **self.params}

    def add_turn(self, prompt: str, answer: str) -> None:
        self.history += [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": answer}]


class _Session:
    """One interactive run: the loop, the commands and the turns."""

    def __init__(self, client: AllToken, conversation: Conversation,
                 args: argparse.Namespace, out: Output, err: Output, *,
                 offline: bool) -> None:
        self.client = client
        self.conversation = conversation
        self.args = args
        self.out = out
        self.err = err
        self.offline = offline
        self.sep = " · " if err.can_show(" · ") else " - "
        # input() hands its prompt to readline only when stdin and stdout are both
        # terminals; otherwise the prompt would go into stdout's file: it goes to
        # stderr instead, where the banner and the summaries are.
        self.prompt_on_stdout = out.isatty()

    def note(self, text: str) -> None:
        self.err.write(text + "\n")

    def run(self) -> int:
        try:
            import readline  # noqa: F401 - importing it is what turns line editing on
        except ImportError:
            pass
        where = " (offline)" if self.offline else ""
        self.note(f"alltoken chat with {self.conversation.model}{where}{self.sep}"
                  f"/help for commands{self.sep}Ctrl-D to exit")
        while True:
            try:
                line = self.read_line()
            except EOFError:  # Ctrl-D
                self.end_prompt_line()
                return 0
            except KeyboardInterrupt:  # Ctrl-C at the prompt: drop the line
                self.end_prompt_line()
                continue
            except UnicodeDecodeError as exc:
                self.note(f"not sent: the line is not {exc.encoding} text (byte "
                          f"0x{exc.object[exc.start]:02x} at offset {exc.start})")
                continue
            try:
                if not self.handle(line):
                    return 0
            except KeyboardInterrupt:
                # A Ctrl-C just outside an answer's own handling (between the end of
                # the stream and the next prompt): it cancels nothing more.
                self.end_prompt_line()

    def end_prompt_line(self) -> None:
        """End the prompt's line where the prompt went (an answer in a file stays
        clean)."""
        (self.out if self.prompt_on_stdout else self.err).write("\n")

    def read_line(self) -> str:
        if self.prompt_on_stdout:
            return input(PROMPT)
        self.err.write(PROMPT)
        return input()

    def handle(self, line: str) -> bool:
        """Act on one line; False ends the conversation."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("/") and not text.startswith("//"):
            return self.command(text)
        problem = _not_text(line)
        if problem:
            self.note(f"not sent: {problem}")
            return True
        return self.ask(line.lstrip()[1:] if text.startswith("//") else line)

    def command(self, text: str) -> bool:
        name, _, rest = text.partition(" ")
        rest = rest.strip()
        conv = self.conversation
        if name == "/reset":
            conv.history.clear()
            self.note("(conversation cleared" + (", system message kept)" if conv.system
                                                 else ")"))
        elif name == "/model":
            if rest:
                conv.model = rest
            self.note(f"(model: {conv.model})")
        elif name == "/system":
            conv.system = rest or None
            self.note(f"(system message: {rest})" if rest else "(system message removed)")
        elif name == "/help":
            self.note(HELP)
        elif name in ("/exit", "/quit"):
            return False
        else:
            self.note(f"unknown command {name}; /help lists the commands "
                      "(//text sends a message starting with /)")
        return True

    def ask(self, prompt: str) -> bool:
        from .cli import _Interrupt, _one_line, _renderer

        body = self.conversation.body(prompt)
        answer = ""
        with _Interrupt() as interrupt:
            renderer = _renderer(self.args, self.out, self.err)
            stream = None
            try:
                stream = self.client.chat.completions.create(
                    stream=True, signal=interrupt.signal, **body)
                for chunk in stream:
                    renderer.chunk(chunk)
                answer = stream.text
                renderer.finish(stream)
            except AllTokenError as exc:
                renderer.stop()
                answer = stream.text if stream is not None else ""
                if isinstance(exc, AbortedError) and interrupt.happened:
                    self.note("(interrupted" + ("; the partial answer is kept)" if answer
                                                else ")"))
                else:
                    self.note(_one_line(exc))
            except KeyboardInterrupt:  # a second Ctrl-C before the abort finished
                renderer.stop()
                answer = stream.text if stream is not None else ""
                self.note("(interrupted)")
            finally:
                renderer.close()
                if stream is not None:
                    stream.close()
        if answer:
            self.conversation.add_turn(prompt, answer)
        return True


def _not_text(line: str) -> Optional[str]:
    """Why *line* cannot be sent, or None. Python reads bytes that are not in the
    terminal's encoding as lone surrogates (``surrogateescape``, under the C locale or
    UTF-8 mode); as JSON they would reach the model as garbage."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(line[exc.start])
        what = (f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF
                else f"U+{code:04X}")
        return (f"the line is not text in the terminal's encoding ({what} at character "
                f"{exc.start})")
    return None


def run(client: AllToken, conversation: Conversation, args: argparse.Namespace,
        out: Output, err: Output, *, offline: bool = False) -> int:
    """Hold a conversation on the terminal until Ctrl-D or ``/exit``; return 0.

    Args:
        client: The client to send the requests with.
        conversation: The model, system message and parameters to start with.
        args: The parsed ``chat`` arguments (for the renderer's options).
        out: Where answers go.
        err: Where the banner, reasoning, summaries and notes go.
        offline: Whether the client talks to the bundled local server.

    Raises:
        OutputError: writing to the terminal failed.
    """
    return _Session(client, conversation, args, out, err, offline=offline).run()
