#!/usr/bin/env python3
"""Prints a short-lived HS256 token that the local stack (`make dev`) accepts.

    make -s token                               # users:read users:write, 1 hour
    SCOPE="users:read" TTL=300 make -s token

It signs with $JWT_KEY, which `make dev` sets to the same development-only secret by default.
"""
import base64
import hashlib
import hmac
import json
import os
import time

DEV_JWT_KEY = "local-development-only-hs256-key-not-a-secret"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


key = os.environ.get("JWT_KEY") or DEV_JWT_KEY
now = int(time.time())
claims = {
    "sub": os.environ.get("SUBJECT", "local-developer"),
    "scope": os.environ.get("SCOPE", "users:read users:write"),
    "iat": now,
    "exp": now + int(os.environ.get("TTL", "3600")),
}
signing_input = f'{b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())}.{b64(json.dumps(claims).encode())}'
signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
print(f"{signing_input}.{b64(signature)}")
