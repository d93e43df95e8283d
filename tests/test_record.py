"""Record and replay: ``alltoken chat --record FILE`` through the recording proxy
(:mod:`alltoken._record`), the file format, and replays through
:class:`alltoken.testing.ReplayReply` and ``alltoken serve --replay FILE``."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

import alltoken
from alltoken import testing as t
from alltoken._record import Recorder
from alltoken.testing import Piece, Recording, RecordingError

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-record-secret-0123456789"


def fixed_chunk(delta: dict[str, Any], finish_reason: Optional[str] = None,
                usage: Optional[dict[str, int]] = None) -> t.Step:
    """A chunk whose bytes do not depend on the time (``t.content`` puts the time in)."""
    obj: dict[str, Any] = {"id": "chatcmpl-rec", "object": "chat.completion.chunk",
                           "created": 1764600000, "model": "m",
                           "choices": [] if usage else
                           [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
    if usage:
        obj["usage"] = usage
    return t.chunk(obj)


#: A stream with a ping before, between and after the chunks, a multi-byte character
#: split between writes (write_size), [DONE] and the cost trailer.
STREAM_STEPS = [
    t.comment("ping - 2026-12-01 15:00:00.000000+00:00"),
    fixed_chunk({"role": "assistant", "content": ""}),
    fixed_chunk({"reasoning_content": "Thinking it over. "}),
    fixed_chunk({"content": "Hello, "}),
    t.comment("ping - 2026-12-01 15:00:01.000000+00:00"),
    fixed_chunk({"content": "wörld ✓"}),
    fixed_chunk({}, "stop"),
    fixed_chunk({}, usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    t.done(),
    t.comment("keep-alive"),
    t.cost("0.0042", prompt_tokens=3, completion_tokens=4),
]

#: Response headers that must not reach a recording.
SECRET_HEADERS = {"Set-Cookie": "session=abc123456789", "X-Upstream-Token": "tok-9876543210",
                  "X-Echo": f"Bearer {KEY}"}


def stream_reply(steps: list[t.Step] = STREAM_STEPS, **kwargs: Any) -> t.StreamReply:
    return t.StreamReply(steps, write_size=kwargs.pop("write_size", 7),
                         request_id="req-rec", **kwargs)


@pytest.fixture
def server() -> Iterator[t.LocalServer]:
    with t.LocalServer(pace=0, api_key=KEY) as srv:
        yield srv


def clean_env(env: dict[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith("ALLTOKEN_") and k not in ("NO_COLOR", "PYTHONIOENCODING")}
    full.update(env)
    return full


def record(server: t.LocalServer, path: Path, *args: str,
           key: str = KEY) -> subprocess.CompletedProcess[str]:
    env = clean_env({"ALLTOKEN_API_KEY": key, "ALLTOKEN_BASE_URL": server.base_url})
    return subprocess.run([sys.executable, "-m", "alltoken", "chat", "hi", "-m", "m",
                           "--record", str(path), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


def outcome(base_url: str) -> dict[str, Any]:
    """What the alltoken client makes of the answer at *base_url*."""
    with alltoken.AllToken(api_key=KEY, base_url=base_url, proxy=False, max_retries=0,
                           timeout=10) as client:
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        chunks = []
        error = None
        try:
            for chunk in stream:
                chunks.append(chunk.raw)
        except alltoken.AllTokenError as exc:
            error = (type(exc).__name__, str(exc))
        finally:
            stream.close()
        return {"chunks": chunks, "text": stream.text, "reasoning": stream.reasoning,
                "cost": stream.cost, "usage": stream.usage, "error": error,
                "request_id": stream.request_id}


def raw_response(base_url: str) -> tuple[int, list[tuple[str, str]], bytes, list[bytes]]:
    """Status, headers, body and the pieces as read, straight from http.client."""
    host, port = re.match(r"http://([\d.]+):(\d+)", base_url).groups()  # type: ignore
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions",
                     json.dumps({"model": "m", "stream": True,
                                 "messages": [{"role": "user", "content": "hi"}]}),
                     {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        pieces = []
        while True:
            piece = resp.read1(65536)
            if not piece:
                break
            pieces.append(piece)
        return resp.status, resp.getheaders(), b"".join(pieces), pieces
    finally:
        conn.close()


class ServeReplay:
    """``alltoken serve --replay FILE`` in a subprocess."""

    def __init__(self, path: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alltoken", "serve", "--port", "0", "--replay",
             str(path), *args], cwd=ROOT, env=clean_env({}), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        if not found:
            self.close()
            pytest.fail(f"serve --replay printed {line!r}; stderr: {self.proc.stderr!r}")
        self.base_url = found.group(1)

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
        return self.proc.returncode


class TestRecordAndReplay:
    def test_a_replay_gives_the_client_the_same_chunks_text_and_cost(
            self, server: t.LocalServer, tmp_path: Path) -> None:
        path = tmp_path / "answer.jsonl"
        server.enqueue(stream_reply(headers=SECRET_HEADERS))
        r = record(server, path, "--json")
        assert r.returncode == 0, r.stderr
        assert "recorded 200 OK" in r.stderr and str(path) in r.stderr
        assert not (tmp_path / "answer.jsonl.partial").exists()

        server.enqueue(stream_reply())
        original = outcome(server.base_url)
        assert original["text"] == "Hello, wörld ✓" and original["cost"] is not None
        with t.LocalServer(pace=0) as replayer:
            replayer.enqueue(t.ReplayReply.load(path))
            assert outcome(replayer.base_url) == original
        serving = ServeReplay(path, "--pace", "none")
        try:
            assert outcome(serving.base_url) == original
            assert outcome(serving.base_url) == original  # every request gets it
        finally:
            assert serving.close() == 0

    def test_the_body_is_replayed_byte_for_byte_with_the_recorded_headers(
            self, server: t.LocalServer, tmp_path: Path) -> None:
        path = tmp_path / "answer.jsonl"
        server.enqueue(stream_reply(headers={"X-Trace": "abc"}, write_size=1))
        assert record(server, path, "-q").returncode == 0
        server.enqueue(stream_reply(headers={"X-Trace": "abc"}, write_size=1))
        status, _, body, _ = raw_response(server.base_url)

        rec = Recording.load(path)
        assert rec.status == status == 200 and rec.complete and rec.framing == "chunked"
        assert rec.body == body
        assert b": ping - 2026-12-01 15:00:01" in body and b"data: [DONE]\n\n" in body
        assert rec.header("x-trace") == "abc" and rec.header("X-Request-Id") == "req-rec"
        assert rec.request is not None
        assert rec.request["json"]["messages"] == [{"role": "user", "content": "hi"}]
        assert rec.request["url"].endswith("/v1/chat/completions")
        # Each byte the server wrote was its own HTTP chunk, and is its own piece; the
        # halves of "ö" and the thirds of "✓" are kept as base64.
        assert len(rec.pieces) == len(body)
        lines = path.read_text(encoding="utf-8").splitlines()
        assert any('"b64"' in line for line in lines)
        assert all(a.t <= b.t for a, b in zip(rec.pieces, rec.pieces[1:]))

        with t.LocalServer(pace=0) as replayer:
            replayer.enqueue(t.ReplayReply.load(path))
            status2, headers2, body2, _ = raw_response(replayer.base_url)
        assert status2 == 200 and body2 == body
        replayed = {k.lower(): v for k, v in headers2}
        assert replayed["x-trace"] == "abc" and replayed["x-request-id"] == "req-rec"
        assert replayed["transfer-encoding"] == "chunked"
        assert replayed["date"] == rec.header("date")  # as recorded, not today's

    def test_a_mid_stream_error_is_replayed(self, server: t.LocalServer,
                                            tmp_path: Path) -> None:
        path = tmp_path / "error.jsonl"
        steps = [fixed_chunk({"content": "partial "}), t.comment("ping"),
                 t.error_event(500, "the upstream model crashed", "server_error")]
        server.enqueue(stream_reply(steps))
        r = record(server, path)
        assert r.returncode == 1 and "the upstream model crashed" in r.stderr
        server.enqueue(stream_reply(steps))
        original = outcome(server.base_url)
        assert original["error"][0] == "InternalServerError"
        assert original["text"] == "partial "
        with t.LocalServer(pace=0) as replayer:
            replayer.enqueue(t.ReplayReply.load(path))
            assert outcome(replayer.base_url) == original

    def test_a_response_that_broke_off_breaks_off_again(self, server: t.LocalServer,
                                                        tmp_path: Path) -> None:
        path = tmp_path / "broken.jsonl"
        steps = [fixed_chunk({"content": "half an ans"}), t.drop()]
        server.enqueue(stream_reply(steps, write_size=None))
        assert record(server, path, "-q").returncode == 1
        rec = Recording.load(path)
        assert not rec.complete and rec.body.startswith(b"data: ")
        with t.LocalServer(pace=0) as replayer:
            replayer.enqueue(t.ReplayReply.load(path))
            got = outcome(replayer.base_url)
        assert got["text"] == "half an ans"
        assert got["error"] is not None and got["error"][0] == "APIConnectionError"

    def test_an_error_status_is_recorded_and_replayed(self, server: t.LocalServer,
                                                      tmp_path: Path) -> None:
        path = tmp_path / "429.jsonl"
        server.enqueue(*[t.ErrorReply(429, message="slow down", headers={"Retry-After": "0"})
                         for _ in range(3)])
        r = record(server, path, "-q")
        assert r.returncode == 1 and "RateLimitError" in r.stderr
        rec = Recording.load(path)
        assert rec.status == 429 and rec.framing == "length"
        assert json.loads(rec.body)["error"]["message"] == "slow down"


class TestSecrets:
    def test_the_key_and_secret_headers_are_never_written(
            self, server: t.LocalServer, tmp_path: Path) -> None:
        path = tmp_path / "answer.jsonl"
        server.enqueue(stream_reply(headers=SECRET_HEADERS))
        assert record(server, path, "-q").returncode == 0
        text = path.read_text(encoding="utf-8")
        assert server.requests[-1].headers["authorization"] == f"Bearer {KEY}"  # sent on
        for secret in (KEY, "session=abc", "tok-9876543210"):
            assert secret not in text
        rec = Recording.load(path)
        assert KEY.encode() not in rec.body
        assert {"Set-Cookie", "X-Upstream-Token", "X-Echo"} <= set(rec.redacted)
        assert rec.header("set-cookie") is None

    def test_the_key_quoted_in_the_body_is_replaced(self, server: t.LocalServer,
                                                    tmp_path: Path) -> None:
        path = tmp_path / "leak.jsonl"
        # Written a byte at a time: the key straddles many pieces.
        steps = [fixed_chunk({"content": f"your key is {KEY}, keep it safe"}), t.done()]
        server.enqueue(stream_reply(steps, write_size=1))
        assert record(server, path, "-q").returncode == 0
        text = path.read_text(encoding="utf-8")
        assert KEY not in text and KEY[3:] not in text
        rec = Recording.load(path)
        assert "body" in rec.redacted
        assert b"your key is <redacted>, keep it safe" in rec.body

    def test_secrets_are_scrubbed_from_the_recorded_request(
            self, server: t.LocalServer, tmp_path: Path) -> None:
        path = tmp_path / "req.jsonl"
        server.enqueue(stream_reply([fixed_chunk({"content": "ok"}), t.done()]))
        env = clean_env({"ALLTOKEN_API_KEY": KEY, "ALLTOKEN_BASE_URL": server.base_url})
        r = subprocess.run([sys.executable, "-m", "alltoken", "chat", f"is {KEY} valid?",
                            "-m", "m", "-q", "--record", str(path)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert KEY not in path.read_text(encoding="utf-8")


class TestPace:
    def test_original_pace_keeps_the_timing_and_none_drops_it(
            self, server: t.LocalServer, tmp_path: Path) -> None:
        path = tmp_path / "slow.jsonl"
        gate = threading.Event()
        server.enqueue(stream_reply([fixed_chunk({"content": "a"}), t.wait(gate, 30),
                                     fixed_chunk({"content": "b"}), t.done()]))
        env = clean_env({"ALLTOKEN_API_KEY": KEY, "ALLTOKEN_BASE_URL": server.base_url})
        proc = subprocess.Popen([sys.executable, "-m", "alltoken", "chat", "hi", "-m", "m",
                                 "-q", "--record", str(path)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.read(1) == b"a"
            time.sleep(0.8)  # the pause being recorded, not a wait for something
            gate.set()
            proc.communicate(timeout=10)
        finally:
            gate.set()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0
        rec = Recording.load(path)
        b_piece = next(p for p in rec.pieces if b'"b"' in p.data)
        assert b_piece.t - rec.pieces[0].t >= 0.8

        def seconds_to_b(pace: str) -> float:
            with t.LocalServer(pace=0) as replayer:
                replayer.enqueue(t.ReplayReply.load(path, pace=pace))
                with alltoken.AllToken(api_key="k", base_url=replayer.base_url,
                                       proxy=False) as client:
                    started = time.monotonic()
                    for chunk in client.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": "x"}],
                            stream=True):
                        if chunk.choices and chunk.choices[0].delta.content == "b":
                            return time.monotonic() - started
            raise AssertionError("no b")

        # The server holds "b" until its recorded time after the request arrived, which
        # is after the client started it: a lower bound whatever the machine's load.
        assert seconds_to_b("original") >= b_piece.t
        assert seconds_to_b("none") < b_piece.t

    def test_pace_must_be_none_or_original(self) -> None:
        with pytest.raises(ValueError, match="pace must be 'none' or 'original'"):
            t.ReplayReply(Recording(status=200), pace="fast")


def valid_text() -> str:
    rec = Recording(status=200, reason="OK", headers=[("Content-Type", "text/event-stream")],
                    pieces=[Piece(0.1, b"data: hi\n\n"), Piece(0.2, "ö".encode()[:1]),
                            Piece(0.3, "ö".encode()[1:] + b"\n")], end_time=0.4)
    return rec.dumps()


class TestFormat:
    def test_round_trip_with_text_and_base64_pieces(self) -> None:
        text = valid_text()
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines[0]["format"] == "alltoken-recording" and lines[0]["version"] == 1
        assert lines[1] == {"t": 0.1, "text": "data: hi\n\n"}
        assert "b64" in lines[2]
        assert lines[-1] == {"t": 0.4, "end": "complete", "bytes": 13}
        rec = Recording.loads(text)
        assert rec.body == "data: hi\n\nö\n".encode()
        assert rec.dumps() == text

    def test_an_unknown_version_is_refused(self, tmp_path: Path) -> None:
        lines = valid_text().splitlines()
        head = json.loads(lines[0])
        head["version"] = 2
        path = tmp_path / "v2.jsonl"
        path.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
        with pytest.raises(RecordingError, match=r"v2\.jsonl: recording format version 2 "
                                                 r"is not supported .*reads version 1"):
            t.ReplayReply.load(path)

    @pytest.mark.parametrize(("damage", "message"), [
        (lambda lines: lines[:-1], r"without its end line: the file is truncated"),
        (lambda lines: lines[:2], r"truncated"),
        (lambda lines: [lines[0], lines[1][:15], *lines[2:]], r"line 2: not JSON"),
        (lambda lines: [lines[0], '{"t": 0.1}', *lines[2:]], r"line 2: expected 'text'"),
        (lambda lines: [lines[0], '{"t": -1, "text": "x"}', *lines[2:]], r"line 2: 't'"),
        (lambda lines: [*lines[:-1], lines[-1].replace('"bytes": 13', '"bytes": 15')],
         r"the body is 13 bytes but the end line says 15"),
        (lambda lines: [*lines, lines[1]], r"the end line is followed by more lines"),
        (lambda lines: ['{"hello": 1}', *lines[1:]], r"not an alltoken recording"),
        (lambda lines: [], r"the file is empty"),
        (lambda lines: [lines[0].replace('"chunked"', '"pigeon"'), *lines[1:]],
         r"framing must be one of"),
    ], ids=["no-end", "cut-short", "half-a-line", "no-data", "negative-time",
            "byte-count", "after-the-end", "not-a-recording", "empty", "framing"])
    def test_a_damaged_file_is_a_clear_error(self, tmp_path: Path, damage: Any,
                                             message: str) -> None:
        path = tmp_path / "damaged.jsonl"
        path.write_text("\n".join(damage(valid_text().splitlines())) + "\n")
        with pytest.raises(RecordingError, match=message) as info:
            Recording.load(path)
        assert str(path) in str(info.value)

    def test_serve_replay_of_a_bad_file_is_one_line_and_exit_1(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.jsonl"
        path.write_text(valid_text().splitlines()[0] + "\n")
        r = subprocess.run([sys.executable, "-m", "alltoken", "serve", "--replay", str(path)],
                           cwd=ROOT, env=clean_env({}), capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and "truncated" in r.stderr
        assert "Traceback" not in r.stderr

    @pytest.mark.parametrize(("args", "message"), [
        (["--pace", "original"], "--pace original needs --replay FILE"),
        (["--replay", os.devnull, "--pace", "0.5"], "with --replay, --pace is 'original'"),
    ])
    def test_serve_pace_usage_errors(self, args: list[str], message: str) -> None:
        r = subprocess.run([sys.executable, "-m", "alltoken", "serve", *args], cwd=ROOT,
                           env=clean_env({}), capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and message in r.stderr


class TestRecorderFailures:
    def test_an_unreachable_server_is_reported_and_nothing_is_written(
            self, tmp_path: Path) -> None:
        path = tmp_path / "none.jsonl"
        env = clean_env({"ALLTOKEN_API_KEY": KEY})
        r = subprocess.run([sys.executable, "-m", "alltoken", "chat", "hi", "-m", "m",
                            "--base-url", "http://127.0.0.1:9/v1", "--record", str(path)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        assert "APIConnectionError: http://127.0.0.1:9" in r.stderr
        assert f"nothing recorded to {path}" in r.stderr
        assert not path.exists() and not (tmp_path / "none.jsonl.partial").exists()

    def test_a_file_that_cannot_be_written_fails_before_the_request(
            self, server: t.LocalServer, tmp_path: Path) -> None:
        r = record(server, tmp_path / "no" / "such" / "dir.jsonl")
        assert r.returncode == 1 and "cannot record" in r.stderr
        assert server.requests == []

    def test_the_recorder_is_usable_on_its_own(self, server: t.LocalServer) -> None:
        server.enqueue(stream_reply())
        with Recorder(server.base_url, timeout=10) as recorder:
            assert recorder.base_url.endswith("/v1")
            got = outcome(recorder.base_url)
        assert got["text"] == "Hello, wörld ✓"
        assert recorder.recording is not None and recorder.recording.complete
        assert KEY not in (recorder.dumps() or "")


class TestInterrupt:
    def test_ctrl_c_keeps_an_incomplete_recording_and_ends_the_upstream_request(
            self, server: t.LocalServer, tmp_path: Path) -> None:
        path = tmp_path / "cut.jsonl"
        gate = threading.Event()
        server.enqueue(stream_reply([fixed_chunk({"content": "partial answer"}),
                                     t.wait(gate, 30), fixed_chunk({"content": "never"}),
                                     t.done()]))
        env = clean_env({"ALLTOKEN_API_KEY": KEY, "ALLTOKEN_BASE_URL": server.base_url})
        proc = subprocess.Popen([sys.executable, "-m", "alltoken", "chat", "hi", "-m", "m",
                                 "--record", str(path)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            assert proc.stdout.read(len("partial answer")) == b"partial answer"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=10)
            server.wait_for_connections(0)  # the recorder closed the upstream request
        finally:
            gate.set()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, err
        assert b"(incomplete)" in err
        rec = Recording.load(path)
        assert not rec.complete and b"partial answer" in rec.body and b"never" not in rec.body


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
class TestHTTPS:
    def test_an_https_server_is_recorded_with_verification(
            self, https_server: t.LocalServer, certs: Path,
            tmp_path: Path) -> None:
        path = tmp_path / "tls.jsonl"
        https_server.enqueue(stream_reply())
        env = clean_env({"ALLTOKEN_API_KEY": KEY, "ALLTOKEN_BASE_URL": https_server.base_url,
                         "SSL_CERT_FILE": str(certs / "ca.pem")})
        r = subprocess.run([sys.executable, "-m", "alltoken", "chat", "hi", "-m", "m", "-q",
                            "--record", str(path)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "Hello, wörld ✓\n"
        rec = Recording.load(path)
        assert rec.complete and rec.request is not None
        assert rec.request["url"].startswith("https://127.0.0.1:")

    def test_an_unknown_certificate_authority_is_refused(
            self, https_server: t.LocalServer,
            tmp_path: Path) -> None:
        path = tmp_path / "tls.jsonl"
        env = clean_env({"ALLTOKEN_API_KEY": KEY, "ALLTOKEN_BASE_URL": https_server.base_url})
        env.pop("SSL_CERT_FILE", None)
        r = subprocess.run([sys.executable, "-m", "alltoken", "chat", "hi", "-m", "m",
                            "--record", str(path)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1
        assert "APIConnectionError: https://127.0.0.1:" in r.stderr
        assert "certificate verify failed" in r.stderr
        assert "retrying" not in r.stderr  # as without --record: not worth a retry
        assert not path.exists() and https_server.requests == []
