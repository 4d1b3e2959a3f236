"""Cold-start benchmark: init time of a function binary, with its database credentials from
DATABASE_URL and from Secrets Manager (moto on loopback, through the real SDK).

A minimal Lambda Runtime API on loopback starts the release binary as Lambda would, and times
  init:   exec -> the runtime's first `GET /invocation/next` (config, secret, connection, first
          connection: everything main does before serving)
  invoke: that event handed over -> its response posted (GET /health: one `SELECT 1`)
Run through `make bench` (`python -m bench.cold_start BINARY DATABASE_URL` from the repository
root); it prints the medians and 90th percentiles over RUNS runs.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

from devtools import events, moto_secret

RUNS = int(os.environ.get("RUNS", "30"))
EVENT = json.dumps(events.http_api("GET", "/health")).encode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runtime(BaseHTTPRequestHandler):
    """The Lambda Runtime API, as far as one invocation needs it."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        run = self.server.run
        if run["next_at"] is not None:  # a second /next: this run is over; hold it
            time.sleep(30)
            return
        run["next_at"] = time.perf_counter()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-request")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:health")
        self.send_header("Content-Length", str(len(EVENT)))
        self.end_headers()
        self.wfile.write(EVENT)

    def do_POST(self):
        run = self.server.run
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        run["response_at"] = time.perf_counter()
        run["response"] = body
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        run["done"].set()


def one_run(binary, env):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    server.run = {"next_at": None, "response_at": None, "done": threading.Event()}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
               AWS_LAMBDA_FUNCTION_NAME="health", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
               AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_LOG_LEVEL="warn",
               PATH=os.environ["PATH"])
    started = time.perf_counter()
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finished = server.run["done"].wait(30)
    process.kill()
    _, stderr = process.communicate()
    server.shutdown()
    server.server_close()
    response = json.loads(server.run.get("response") or b"{}")
    if not finished or response.get("statusCode") != 200:
        sys.exit(f"run failed: {response}\n{stderr.decode()}")
    run = server.run
    return (run["next_at"] - started) * 1000, (run["response_at"] - run["next_at"]) * 1000


def summary(samples):
    samples = sorted(samples)
    p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
    return f"median {statistics.median(samples):6.1f} ms   p90 {p90:6.1f} ms"


def main():
    binary, database_url = sys.argv[1], sys.argv[2]
    moto_port = free_port()
    moto = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"),
                             "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        aws = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}", "AWS_REGION": "us-east-1",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_EC2_METADATA_DISABLED": "true"}
        client = boto3.client("secretsmanager", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        moto_secret.create(client, "bench/db", database_url)
        modes = {
            "DATABASE_URL": {"DATABASE_URL": database_url},
            "DB_SECRET_ID (moto)": dict(aws, DB_SECRET_ID="bench/db", DB_SSLMODE="disable"),
        }
        print(f"{os.path.basename(binary)}: {RUNS} cold starts per mode, runs interleaved\n")
        results = {mode: ([], []) for mode in modes}
        for _ in range(RUNS):
            for mode, env in modes.items():
                init, invoke = one_run(binary, env)
                results[mode][0].append(init)
                results[mode][1].append(invoke)
        for mode, (inits, invokes) in results.items():
            print(f"{mode:22} init    {summary(inits)}")
            print(f"{'':22} invoke  {summary(invokes)}")
        added = statistics.median(results["DB_SECRET_ID (moto)"][0]) - statistics.median(results["DATABASE_URL"][0])
        print(f"\nsecret fetch adds {added:.1f} ms to the median init")
    finally:
        moto.kill()


if __name__ == "__main__":
    main()
