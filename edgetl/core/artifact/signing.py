"""Ed25519 signatures of artifacts, for fleets: `export --sign KEY`, `--trust PUBKEY`.

The signature covers the manifest's digest, and the manifest lists every file with its
sha256, so one signature vouches for every byte the device loads. Keys are ordinary
ed25519 keys: `ssh-keygen -t ed25519`, `openssl genpkey -algorithm ed25519`, or
`edgetl keygen`. Uses `cryptography` (imported only when signing or verifying).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgetl.core.errors import EdgetlError

SIGNATURE_FILE = "signature.json"
DOMAIN = b"edgetl artifact manifest v1\n"  # a signature over anything else never verifies here


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # pragma: no cover - a dependency of edgetl
        raise EdgetlError(
            "signing needs the cryptography package: pip install cryptography"
        ) from exc
    return serialization, ed25519


def load_private_key(path: Path) -> Any:
    """An ed25519 private key: PEM (PKCS#8, as openssl writes) or OpenSSH's format."""
    serialization, ed25519 = _crypto()
    data = _read(path, "--sign")
    for loader in (serialization.load_pem_private_key, serialization.load_ssh_private_key):
        try:
            key = loader(data, password=None)
        except (ValueError, TypeError):
            continue
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key
        raise EdgetlError(f"--sign {path}: not an ed25519 key (edgetl signs with ed25519)")
    raise EdgetlError(
        f"--sign {path}: not an unencrypted ed25519 private key (PEM or OpenSSH); make one "
        "with `edgetl keygen KEY`"
    )


def load_public_key(path: Path) -> Any:
    """An ed25519 public key: PEM, or one OpenSSH line (`ssh-ed25519 AAAA... comment`)."""
    serialization, ed25519 = _crypto()
    data = _read(path, "--trust")
    for loader in (serialization.load_pem_public_key, serialization.load_ssh_public_key):
        try:
            key = loader(data)
        except Exception:  # noqa: BLE001 - each loader raises its own kinds of error
            continue
        if isinstance(key, ed25519.Ed25519PublicKey):
            return key
    raise EdgetlError(f"--trust {path}: not an ed25519 public key (PEM or an OpenSSH .pub line)")


def _read(path: Path, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise EdgetlError(f"{option} {path}: cannot read the key ({exc.strerror})") from exc


def trusted_keys(trust: str | Path | Sequence[str | Path] | None) -> list[Any]:
    """Public keys from files: one path, several, or None (no signature required)."""
    if trust is None:
        return []
    paths = [trust] if isinstance(trust, (str, Path)) else list(trust)
    if not paths:
        return []
    return [load_public_key(Path(p)) for p in paths]


def key_id(public_key: Any) -> str:
    """SHA256 of the raw public key, as `ssh-keygen -l` prints it (base64, no padding)."""
    serialization, _ = _crypto()
    blob = public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).split()[1]
    raw = base64.b64decode(blob)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def sign(root: Path, manifest_digest: str, private_key: Any) -> str:
    """Write SIGNATURE_FILE into the artifact; returns the signing key's id."""
    from edgetl.core.files import atomic_write_json

    public = private_key.public_key()
    signature = private_key.sign(DOMAIN + manifest_digest.encode())
    identity = key_id(public)
    atomic_write_json(
        root / SIGNATURE_FILE,
        {
            "algorithm": "ed25519",
            "key_id": identity,
            "manifest_digest": manifest_digest,
            "signature": base64.b64encode(signature).decode(),
        },
    )
    return identity


def verify(root: Path, manifest_digest: str, trusted: Sequence[Any]) -> str:
    """The id of the trusted key that signed this manifest; exit 2 when none did."""
    from cryptography.exceptions import InvalidSignature

    path = root / SIGNATURE_FILE
    names = ", ".join(key_id(k) for k in trusted)
    if not path.is_file():
        raise EdgetlError(
            f"{root}: not signed (no {SIGNATURE_FILE}); --trust needs a signed "
            f"artifact (edgetl export --sign KEY). Trusted: {names}"
        )
    try:
        record = json.loads(path.read_text())
        signature = base64.b64decode(record["signature"], validate=True)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise EdgetlError(f"{path}: not a readable signature ({exc})") from exc
    for key in trusted:
        try:
            key.verify(signature, DOMAIN + manifest_digest.encode())
        except InvalidSignature:
            continue
        return key_id(key)
    raise EdgetlError(
        f"{root}: not signed by a trusted key (signed by {record.get('key_id', 'unknown')}, "
        f"trusted: {names}), or its manifest changed since signing; do not deploy it"
    )


def generate(path: Path, force: bool = False) -> tuple[Path, str]:
    """A new ed25519 key pair: PATH (private, PEM, mode 0600) and PATH.pub (OpenSSH line)."""
    from edgetl.core.files import atomic_write_text

    serialization, ed25519 = _crypto()
    public_path = path.with_name(path.name + ".pub")
    for existing in (path, public_path):
        if existing.exists() and not force:
            raise EdgetlError(f"{existing} already exists; pass --force to replace the key")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "wb") as out:
        out.write(private)
    os.chmod(path, 0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    atomic_write_text(public_path, public.decode() + " edgetl\n")
    return public_path, key_id(key.public_key())
