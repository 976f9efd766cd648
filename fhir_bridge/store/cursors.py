"""Search paging cursors, sealed: encrypted so that sort values (names, birth dates,
identifiers) never show in URLs, and authenticated so that only cursors this server issued
are accepted.

HMAC-SHA256 (stdlib) is both the MAC and, in counter mode with a random nonce, the keystream;
the key lives in the database so that every node of a deployment opens every cursor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from typing import Any

import orjson

from fhir_bridge.errors import InvalidRequestError

_NONCE = 12
_TAG = 16


def seal(values: list[Any], key: bytes, search: str) -> str:
    """`search` names what the values are keys of (type and sort), checked on unseal."""
    plain = orjson.dumps([search, values])
    nonce = os.urandom(_NONCE)
    cipher = _xor(plain, _keystream(key, nonce, len(plain)))
    tag = _tag(key, nonce + cipher)
    return base64.urlsafe_b64encode(nonce + cipher + tag).decode().rstrip("=")


def unseal(cursor: str, key: bytes, search: str) -> list[Any]:
    """The values of a cursor this server sealed for `search`; else a 400 naming `_cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, binascii.Error):
        raw = b""
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    if len(raw) < _NONCE + _TAG or not hmac.compare_digest(tag, _tag(key, nonce + cipher)):
        raise InvalidRequestError("Invalid paging cursor", expression="_cursor")
    sealed_for, values = orjson.loads(_xor(cipher, _keystream(key, nonce, len(cipher))))
    if sealed_for != search:
        raise InvalidRequestError("The paging cursor is of another search", expression="_cursor")
    return list(values)


def _tag(key: bytes, data: bytes) -> bytes:
    return hmac.new(_subkey(key, b"mac"), data, hashlib.sha256).digest()[:_TAG]


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    enc = _subkey(key, b"enc")
    blocks = (length + 31) // 32
    stream = b"".join(
        hmac.new(enc, nonce + n.to_bytes(4, "big"), hashlib.sha256).digest() for n in range(blocks)
    )
    return stream[:length]


def _subkey(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, purpose, hashlib.sha256).digest()


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))
