"""Schemathesis hooks for the contract test (e2e/tests/contract.rs): what a generator cannot
know about this API from its schema alone.

- A cursor is opaque, but not arbitrary: only the API's own cursors are valid, so the
  `users-api-cursor` format draws cursors as the API writes them (a format byte, the id after
  which the page starts, a checksum; shared/src/domain/cursor.rs).
- An Idempotency-Key binds a request body: reusing one with another body is a 422 by design.
  Drawn keys repeat ("0", "0", ...), so each key is suffixed with a digest of its body: the
  same key and body still make the same key (replays are exercised), another body another key.
- `cargo lambda watch` itself cannot carry a body that is not UTF-8, nor a header value that
  is not ASCII (see carried_by_the_emulator).
- Schemathesis's coverage phase draws header values from [A-Za-z0-9] only, and custom formats
  not at all; where a schema needs more (an entity tag's quotes, a cursor's checksum) it falls
  back to a value the schema rejects, yet labels the case positive. Such cases are dropped
  (filter_case): the fuzzing and stateful phases send real ones.
"""

import base64
import binascii
import hashlib
import json
import pathlib
import re
import struct

import schemathesis
import yaml
from hypothesis import strategies as st

CURSOR_DOMAIN = b"users-api listing cursor"
VALID_KEY = re.compile(r"[!-~]{1,255}")
DOCUMENT = yaml.safe_load((pathlib.Path(__file__).parents[2] / "openapi.yaml").read_text())
ENTITY_TAGS = re.compile(DOCUMENT["components"]["parameters"]["IfMatch"]["schema"]["pattern"])


def cursor(after: int) -> str:
    payload = b"\x01" + struct.pack(">q", after)
    checksum = hashlib.sha256(CURSOR_DOMAIN + payload).digest()[:4]
    return base64.urlsafe_b64encode(payload + checksum).rstrip(b"=").decode()


def is_cursor(value: str) -> bool:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return False
    payload, checksum = raw[:9], raw[9:]
    return (
        len(raw) == 13
        and raw[0] == 1
        and hashlib.sha256(CURSOR_DOMAIN + payload).digest()[:4] == checksum
        and cursor(struct.unpack(">q", payload[1:])[0]) == value
    )


schemathesis.openapi.format(
    "users-api-cursor", st.integers(min_value=1, max_value=2**63 - 1).map(cursor)
)


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if case.operation.label != "POST /users" or not isinstance(key, str):
        return
    if not VALID_KEY.fullmatch(key):
        return
    body = json.dumps(case.body, sort_keys=True, default=repr).encode()
    headers["Idempotency-Key"] = f"{key[:200]}.{hashlib.sha256(body).hexdigest()[:16]}"


def carried_by_the_emulator(case) -> bool:
    """Whether `cargo lambda watch` can put the request in an event: it answers 500 itself,
    before any function runs, for a body that is not UTF-8 or a header value beyond ASCII
    (Latin-1 on the wire). API Gateway delivers such bodies base64-encoded, and the functions
    answer 400 to both: shared/tests/api/create_user.rs and idempotency.rs send them directly."""
    body = case.body
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(not isinstance(value, str) or value.isascii() for value in (case.headers or {}).values())


@schemathesis.hook
def filter_case(context, case):
    if not carried_by_the_emulator(case):
        return False
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return True
    headers = case.headers or {}
    for name in ("If-Match", "If-None-Match"):
        value = headers.get(name)
        if isinstance(value, str) and not ENTITY_TAGS.fullmatch(value):
            return False
    cursor_value = (case.query or {}).get("cursor")
    return not isinstance(cursor_value, str) or is_cursor(cursor_value)

