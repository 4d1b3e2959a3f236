"""Stores a database URL's credentials in a local Secrets Manager (moto) as the JSON RDS and
rotation write, waiting for a just-started moto_server to answer.

    .venv/bin/python -m devtools.moto_secret SECRET_NAME DATABASE_URL
                            # endpoint, region and keys from the AWS_* variables
Used by `make dev-secrets` and `make bench`.
"""
import json
import sys
import time
import urllib.parse

import boto3


def rds_secret(database_url: str) -> str:
    url = urllib.parse.urlparse(database_url)
    return json.dumps({"engine": "postgres", "host": url.hostname, "port": url.port,
                       "username": url.username, "password": url.password,
                       "dbname": url.path.lstrip("/")})


def create(client, name: str, database_url: str) -> None:
    for _ in range(100):
        try:
            client.create_secret(Name=name, SecretString=rds_secret(database_url))
            return
        except Exception:  # moto_server still starting
            time.sleep(0.1)
    sys.exit("moto_server did not answer")


if __name__ == "__main__":
    create(boto3.client("secretsmanager"), sys.argv[1], sys.argv[2])
