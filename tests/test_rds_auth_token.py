"""The known-answer vector the Rust RDS auth-token test checks against
(test-support/fixtures/rds-auth-token.json) is what boto3, an independent implementation,
produces for the same credentials, endpoint, user, region and frozen clock."""
import json

from devtools.paths import ROOT
from devtools.rds_auth_token import auth_token

VECTOR = json.loads((ROOT / "test-support" / "fixtures" / "rds-auth-token.json").read_text())


def test_boto3_signs_the_committed_token():
    token = auth_token(VECTOR["host"], VECTOR["port"], VECTOR["user"], VECTOR["region"],
                       VECTOR["access_key_id"], VECTOR["secret_access_key"],
                       VECTOR["session_token"], VECTOR["unix_time"])
    assert token == VECTOR["token"]
