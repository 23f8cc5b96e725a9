"""Certificates made at test time with the ``openssl`` command (no Python crypto package needed).

One :func:`make_certs` call writes a small PKI into a directory: a CA, a server
certificate for 127.0.0.1 and localhost, a client certificate, and the bad
ones the tests need (another CA, a server certificate for another host name,
an expired one, a client certificate from the other CA). EC P-256 keys: fast
to make, a few milliseconds each.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certs", "KeyPair", "make_certs", "openssl_available"]

_DAYS = "2"


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert: Path
    key: Path

    def key_body(self) -> str:
        """The base64 body of the key (no BEGIN/END lines): must never show up in logs."""
        lines = self.key.read_text().splitlines()
        return "".join(line for line in lines if line and not line.startswith("-----"))


@dataclass(frozen=True)
class Certs:
    """Paths of everything :func:`make_certs` wrote."""

    ca: Path
    server: KeyPair
    client: KeyPair
    #: A second client of the same CA (another application).
    other_client: KeyPair
    #: A CA that signed none of the above.
    wrong_ca: Path
    #: Signed by ``ca`` for ``elsewhere.example`` only.
    wrong_host: KeyPair
    #: Signed by ``ca`` for 127.0.0.1 and localhost, but expired.
    expired: KeyPair
    #: A client certificate signed by ``wrong_ca``.
    rogue_client: KeyPair


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(
            f"openssl {' '.join(args)} failed: {done.stderr.decode(errors='replace')}"
        )


def _key(directory: Path, name: str) -> Path:
    path = directory / f"{name}.key"
    _run(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", str(path), cwd=directory,
    )  # fmt: skip
    return path


def _ca(directory: Path, name: str) -> KeyPair:
    key = _key(directory, name)
    cert = directory / f"{name}.pem"
    _run(
        "req", "-x509", "-new", "-key", str(key), "-subj", f"/CN={name}", "-days", _DAYS,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", str(cert), cwd=directory,
    )  # fmt: skip
    return KeyPair(cert, key)


def _leaf(
    directory: Path,
    name: str,
    ca: KeyPair,
    *,
    usage: str,
    san: str | None = None,
    days: str = _DAYS,
) -> KeyPair:
    key = _key(directory, name)
    csr = directory / f"{name}.csr"
    cert = directory / f"{name}.pem"
    ext = directory / f"{name}.ext"
    lines = [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature",
        f"extendedKeyUsage={usage}",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid,issuer",
    ]
    if san:
        lines.append(f"subjectAltName={san}")
    ext.write_text("\n".join(lines) + "\n")
    _run("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr), cwd=directory)
    _run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-days", days, "-extfile", str(ext), "-out", str(cert),
        cwd=directory,
    )  # fmt: skip
    return KeyPair(cert, key)


def make_certs(directory: Path) -> Certs:
    """Write a CA, server, client and bad certificates into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "test-ca")
    wrong_ca = _ca(directory, "wrong-ca")
    local = "IP:127.0.0.1,DNS:localhost"
    return Certs(
        ca=ca.cert,
        server=_leaf(directory, "server", ca, usage="serverAuth", san=local),
        client=_leaf(directory, "client", ca, usage="clientAuth"),
        other_client=_leaf(directory, "other-client", ca, usage="clientAuth"),
        wrong_ca=wrong_ca.cert,
        wrong_host=_leaf(
            directory, "wrong-host", ca, usage="serverAuth", san="DNS:elsewhere.example"
        ),
        # A validity that ends before it starts: expired from the moment it exists.
        expired=_leaf(directory, "expired", ca, usage="serverAuth", san=local, days="-1"),
        rogue_client=_leaf(directory, "rogue-client", wrong_ca, usage="clientAuth"),
    )
