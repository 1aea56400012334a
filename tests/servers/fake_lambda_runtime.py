#!/usr/bin/env python3
"""A local Lambda Runtime API (AWS's published spec, version 2018-06-01), for running the real
`bootstrap` as Lambda would, on 127.0.0.1 only.

    python3 fake_lambda_runtime.py [PORT]   # PORT 0 (the default) picks a free one; the first
                                            # line on stdout is the port

The runtime's side:
    GET  /2018-06-01/runtime/invocation/next             waits for an event; answers it with
                                                         Lambda-Runtime-Aws-Request-Id,
                                                         Lambda-Runtime-Deadline-Ms, ...-Invoked-
                                                         Function-Arn, ...-Trace-Id
    POST /2018-06-01/runtime/invocation/<id>/response    the result
    POST /2018-06-01/runtime/invocation/<id>/error       {"errorMessage", "errorType", ...}
    POST /2018-06-01/runtime/init/error                  the same, for a failed init

The test's side:
    PUT  /control/enqueue          {"event": ..., "deadline_ms_from_now": N}: queues an
                                   invocation; answers {"request_id": ...}
    GET  /control/results          every result so far, in order: {"request_id", "kind"
                                   ("response", "error" or "init_error"), "body", "error_type",
                                   "deadline_ms", "received_ms", "next_ms"}
    GET  /control/wait?count=N&timeout=S
                                   waits until there are N results (or S seconds passed), then
                                   answers them as /control/results does
"""

import json
import sys
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/2018-06-01/runtime"
CONDITION = threading.Condition()
QUEUE = deque()  # (request_id, event, deadline_ms)
DEADLINES = {}  # request_id -> deadline_ms
HANDED_OUT = {}  # request_id -> when /next handed it out, Unix ms
RESULTS = []


def now_ms():
    return int(time.time() * 1000)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, value, headers=()):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, header in headers:
            self.send_header(name, header)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == PREFIX + "/invocation/next":
            with CONDITION:
                while not QUEUE:
                    CONDITION.wait()
                request_id, event, deadline_ms = QUEUE.popleft()
                HANDED_OUT[request_id] = now_ms()
            self.send_json(200, event, [
                ("Lambda-Runtime-Aws-Request-Id", request_id),
                ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
                ("Lambda-Runtime-Invoked-Function-Arn",
                 "arn:aws:lambda:eu-central-1:123456789012:function:batch-job-aurora"),
                ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0"),
            ])
        elif url.path == "/control/results":
            with CONDITION:
                self.send_json(200, list(RESULTS))
        elif url.path == "/control/wait":
            query = parse_qs(url.query)
            count = int(query.get("count", ["1"])[0])
            timeout = float(query.get("timeout", ["30"])[0])
            end = time.monotonic() + timeout
            with CONDITION:
                while len(RESULTS) < count and time.monotonic() < end:
                    CONDITION.wait(max(0.0, end - time.monotonic()))
                results = list(RESULTS)
            self.send_json(200, results)
        else:
            self.send_json(404, {"errorMessage": "no such path"})

    def do_POST(self):
        url = urlparse(self.path)
        body = self.read_body()
        try:
            value = json.loads(body) if body else None
        except ValueError:
            value = body.decode(errors="replace")
        parts = url.path[len(PREFIX):].strip("/").split("/")
        if url.path == PREFIX + "/init/error":
            self.record(None, "init_error", value)
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            request_id = parts[1]
            if request_id not in DEADLINES:
                self.send_json(400, {"errorMessage": "unknown request id"})
                return
            self.record(request_id, parts[2], value)
        else:
            self.send_json(404, {"errorMessage": "no such path"})
            return
        self.send_json(202, {"status": "OK"})

    def record(self, request_id, kind, value):
        # Lambda reports the body's errorType; the header is a hint some runtimes set to
        # "unhandled" whatever the error.
        error_type = value.get("errorType") if isinstance(value, dict) else None
        if error_type is None:
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        with CONDITION:
            RESULTS.append({
                "request_id": request_id,
                "kind": kind,
                "body": value,
                "error_type": error_type if kind != "response" else None,
                "deadline_ms": DEADLINES.get(request_id),
                "next_ms": HANDED_OUT.get(request_id),
                "received_ms": now_ms(),
            })
            CONDITION.notify_all()

    def do_PUT(self):
        url = urlparse(self.path)
        if url.path != "/control/enqueue":
            self.send_json(404, {"errorMessage": "no such path"})
            return
        spec = json.loads(self.read_body() or b"{}")
        request_id = str(uuid.uuid4())
        deadline_ms = now_ms() + int(spec.get("deadline_ms_from_now", 900_000))
        with CONDITION:
            DEADLINES[request_id] = deadline_ms
            QUEUE.append((request_id, spec.get("event"), deadline_ms))
            CONDITION.notify_all()
        self.send_json(200, {"request_id": request_id})


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
