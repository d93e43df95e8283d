"""A throwaway CA and a server certificate for 127.0.0.1 signed by it, for the TLS mode of
``run.py``'s end-to-end part: made at run time into a directory the caller owns (a
temporary one), never kept.

Made with the ``openssl`` command (:func:`with_openssl`, which ``tests/conftest.py``'s
``certs`` fixture calls too); without it, with the ``trustme`` package if it imports;
without either, not at all (:func:`make` says why). The standard library cannot make
certificates.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple, Optional, Union

__all__ = ["Certs", "make", "with_openssl"]


class Certs(NamedTuple):
    #: PEM file of the CA certificate: what every client is told to trust.
    ca: str
    #: PEM files of the server's certificate (for IP 127.0.0.1) and of its key.
    cert: str
    key: str
    #: how they were made, for the report
    how: str


_LEAF_EXT = ("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
             "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
             "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")


def with_openssl(d: Path) -> Certs:
    """Make the CA and the certificate in *d* with the ``openssl`` command.

    Raises:
        OSError, subprocess.CalledProcessError: the command is missing or failed.
    """

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
        "ca.pem", "-days", "2", "-subj", "/CN=alltoken throwaway CA", "-addext",
        "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
        "-subj", "/CN=127.0.0.1")
    (d / "leaf.ext").write_text(_LEAF_EXT)
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext")
    return Certs(str(d / "ca.pem"), str(d / "leaf.pem"), str(d / "leaf.key"),
                 "openssl command, RSA 2048")


def _trustme(d: Path) -> Certs:
    import trustme  # type: ignore[import-not-found]

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(d / "leaf.key"))
    leaf.cert_chain_pems[0].write_to_path(str(d / "leaf.pem"))
    return Certs(str(d / "ca.pem"), str(d / "leaf.pem"), str(d / "leaf.key"), "trustme")


def make(directory: Union[str, Path]) -> tuple[Optional[Certs], str]:
    """``(certs, "")``, or ``(None, why not)`` when neither ``openssl`` nor ``trustme``
    could make them."""
    d = Path(directory)
    why = []
    if shutil.which("openssl") is not None:
        try:
            return with_openssl(d), ""
        except (OSError, subprocess.CalledProcessError) as exc:
            err = getattr(exc, "stderr", b"") or b""
            last = err.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
            why.append(f"openssl failed: {last[0][:100]}")
    else:
        why.append("no openssl command")
    try:
        return _trustme(d), ""
    except ImportError:
        why.append("no trustme package")
    except Exception as exc:  # reported, not fatal: the HTTP rows do not need it
        why.append(f"trustme failed: {type(exc).__name__}: {exc}"[:100])
    return None, "; ".join(why)
