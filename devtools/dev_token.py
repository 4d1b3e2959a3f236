"""Prints a short-lived HS256 token that the local stack (`make dev`) accepts.

    make -s token                               # users:read users:write, 1 hour
    SCOPE="users:read" TTL=300 make -s token
    python3 -m devtools.dev_token key           # the development key itself (scripts/dev.sh)
    python3 -m devtools.dev_token audience      # the audience `make dev` binds tokens to

It signs with $JWT_KEY, or else with the development-only key that `make dev` verifies with,
for $JWT_AUDIENCE, or else the development audience.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time

DEV_JWT_KEY = "local-development-only-hs256-key-not-a-secret"
DEV_AUDIENCE = "users-api-local"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(key: str, audience: str, subject: str, scope: str, ttl: int) -> str:
    now = int(time.time())
    claims = {"sub": subject, "aud": audience, "scope": scope, "iat": now, "exp": now + ttl}
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


if __name__ == "__main__":
    if sys.argv[1:] == ["key"]:
        print(DEV_JWT_KEY)
    elif sys.argv[1:] == ["audience"]:
        print(DEV_AUDIENCE)
    else:
        print(token(
            key=os.environ.get("JWT_KEY") or DEV_JWT_KEY,
            audience=os.environ.get("JWT_AUDIENCE") or DEV_AUDIENCE,
            subject=os.environ.get("SUBJECT", "local-developer"),
            scope=os.environ.get("SCOPE", "users:read users:write"),
            ttl=int(os.environ.get("TTL", "3600")),
        ))
