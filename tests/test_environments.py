"""Restricted environments: what a Python built without a module still gets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, "
                           f"{str(ROOT)!r})\n{code}"], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ))


def test_without_ssl_an_https_client_is_refused_at_construction_with_a_clear_error(
        ) -> None:
    out = run_python(
        "sys.modules['ssl'] = None; sys.modules['_ssl'] = None  # a Python without OpenSSL\n"
        "import alltoken\n"
        "try:\n"
        "    alltoken.AllToken(api_key='k', base_url='https://api.example/v1')\n"
        "except alltoken.AllTokenError as err:\n"
        "    print(type(err).__name__, err.retryable, 'TLS' in str(err), 'ssl' in str(err))\n"
        "alltoken.AllToken(api_key='k', base_url='http://127.0.0.1:9/v1')\n"
        "print('http client made')\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "APIConnectionError False True True\nhttp client made\n"


def test_a_cold_import_leaves_out_what_only_some_streams_need() -> None:
    # decimal (with numbers) is needed by a cost trailer only; Cost's annotations still
    # resolve before it is imported, to the real class, and importing it then works.
    out = run_python(
        "import alltoken, typing\n"
        "later = ('decimal', 'numbers', 'logging', 'gzip', 'asyncio',\n"
        "         'alltoken._partial_json', 'alltoken.testing', 'alltoken.cli')\n"
        "print([m for m in later if m in sys.modules])\n"
        "hints = typing.get_type_hints(alltoken.Cost)\n"
        "import decimal\n"
        "print(hints['cost'] is decimal.Decimal,\n"
        "      hints['input_price'] == typing.Optional[decimal.Decimal])\n"
        "print(alltoken.Cost(), alltoken.Cost().cost is not alltoken.Cost().cost)\n"
        "from alltoken._types import parse_cost\n"
        "print(parse_cost('{\"cost\":\"0.0012\",\"prompt_tokens\":15}'))\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[]", "True True",
        "Cost(cost=Decimal('0'), input_price=None, output_price=None, prompt_tokens=None, "
        "completion_tokens=None) True",
        "Cost(cost=Decimal('0.0012'), input_price=None, output_price=None, prompt_tokens=15, "
        "completion_tokens=None)"]
