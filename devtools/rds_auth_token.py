"""An RDS IAM auth token computed by boto3 (an implementation independent of ours) at a frozen
instant, for the known-answer vector in test-support/fixtures/rds-auth-token.json and for the
end-to-end test that sets it as a role's password.

    .venv/bin/python -m devtools.rds_auth_token HOST PORT USER REGION KEY SECRET TOKEN UNIX_TIME
"""
import datetime
import os
import sys
from unittest import mock

# botocore's pure-Python signer, whose clock can be frozen (the CRT one reads its own).
os.environ["BOTO_DISABLE_CRT"] = "true"

import boto3  # noqa: E402
import botocore.auth  # noqa: E402


def auth_token(host, port, user, region, key, secret, session_token, unix_time):
    frozen = datetime.datetime.fromtimestamp(int(unix_time), datetime.timezone.utc).replace(tzinfo=None)
    client = boto3.client("rds", region_name=region, aws_access_key_id=key,
                          aws_secret_access_key=secret, aws_session_token=session_token or None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=frozen):
        return client.generate_db_auth_token(DBHostname=host, Port=int(port), DBUsername=user, Region=region)


if __name__ == "__main__":
    print(auth_token(*sys.argv[1:]))
