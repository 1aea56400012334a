#!/usr/bin/env python3
"""A local Lambda Runtime API (version 2018-06-01), written from AWS's published reference
("Using the Lambda runtime API for custom runtimes"), for running the real `bootstrap` in tests.

Point the runtime at it with AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT. It binds 127.0.0.1 only.

    python3 fake_lambda_runtime.py [PORT]   # PORT 0 (the default) picks one; the first line on
                                            # stdout is "listening on PORT", then it serves until killed

The runtime side (what `bootstrap` calls):
    GET  /2018-06-01/runtime/invocation/next            long-polls until an invocation is queued;
         200 with the event as the body and the headers Lambda-Runtime-Aws-Request-Id,
         Lambda-Runtime-Deadline-Ms, Lambda-Runtime-Invoked-Function-Arn, Lambda-Runtime-Trace-Id
         (and Lambda-Runtime-Client-Context / -Cognito-Identity when given)
    POST /2018-06-01/runtime/invocation/{id}/response   202 {"status":"OK"}; 413 over 6 MiB
    POST /2018-06-01/runtime/invocation/{id}/error      202; header Lambda-Runtime-Function-Error-Type,
                                                        body {"errorMessage", "errorType", "stackTrace"}
    POST /2018-06-01/runtime/init/error                 202; same header and body
  An unknown request id, or one already answered, gets 400 {"errorType": "InvalidRequestID" |
  "InvalidStateTransition"} and is recorded under "rejected", not in the results.

The control side (what the tests call):
    PUT  /control/enqueue   {"event": <any JSON>, "deadline_ms_from_now": N (default 900000, counted
                             from when /next hands it out), "request_id", "function_arn",
                             "trace_id", "client_context", "cognito_identity" (all optional),
                             "raw_event": "text" (sent as is instead of JSON)}
                            -> {"request_id": "..."}; a JSON array enqueues several in order
    GET  /control/results   every answer in arrival order: {"kind": "response"|"error"|"init_error",
                             "request_id", "status", "error_type", "body" (parsed JSON, else text),
                             "headers", "received_ms", "delivered_ms", "deadline_ms",
                             "elapsed_ms" (from /next to the answer), "late" (after the deadline)}
    GET  /control/wait?count=N&timeout=S    blocks until N results exist: 200 with them all, or 408
                                            with those there are when S seconds (default 30) pass
    GET  /control/wait?polling=1&timeout=S  blocks until the runtime is waiting in /next (its init
                                            is done and it is idle): 200 {"polling": n}, or 408
    GET  /control/state     {"queued", "in_flight", "polling", "results", "rejected", "next_calls"}
    GET  /control/requests  every runtime request seen: method, path, headers, time_ms
    PUT  /control/reset     forgets the queue, the results and the requests
"""

import json
import select
import socket
import sys
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/2018-06-01/runtime"
MAX_RESPONSE = 6 * 1024 * 1024  # Lambda's synchronous response limit
DEFAULT_DEADLINE_MS = 900_000
DEFAULT_ARN = "arn:aws:lambda:us-east-1:123456789012:function:batch-job-aurora"

STATE = threading.Condition()
QUEUE = deque()       # invocations waiting for /next
IN_FLIGHT = {}        # request id -> the invocation, handed out and not answered yet
ANSWERED = set()
RESULTS = []
REJECTED = []
REQUESTS = []
NEXT_CALLS = []       # when each /next arrived (ms), for init-time measurements
POLLING = [0]         # how many /next are blocked right now


def now_ms():
    return int(time.time() * 1000)


def trace_id():
    return "Root=1-%08x-%s;Parent=%s;Sampled=0" % (
        int(time.time()), uuid.uuid4().hex[:24], uuid.uuid4().hex[:16])


def parse(body):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers are written in pieces; without this each reused connection stalls ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    # --- plumbing --------------------------------------------------------------------------
    def send_body(self, status, body, headers=(), content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, value, headers=()):
        self.send_body(status, json.dumps(value).encode(), headers)

    def read_body(self):
        """The request body, with or without chunked transfer encoding (trailers are kept)."""
        self.trailers = {}
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while True:
                line = self.rfile.readline().strip()
                if not line:
                    break
                name, _, value = line.decode("latin-1").partition(":")
                self.trailers[name.strip().lower()] = value.strip()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

    def record(self):
        url = urlparse(self.path)
        if not url.path.startswith("/control/"):
            with STATE:
                REQUESTS.append({
                    "method": self.command,
                    "path": url.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "time_ms": now_ms(),
                })
        return url

    def client_gone(self):
        """True when the runtime closed its connection while we hold its /next."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # --- methods ---------------------------------------------------------------------------
    def do_GET(self):
        url = self.record()
        query = parse_qs(url.query)
        if url.path == f"{PREFIX}/invocation/next":
            return self.next_invocation()
        if url.path == "/control/results":
            with STATE:
                return self.send_json(200, list(RESULTS))
        if url.path == "/control/requests":
            with STATE:
                return self.send_json(200, list(REQUESTS))
        if url.path == "/control/state":
            with STATE:
                return self.send_json(200, self.state())
        if url.path == "/control/wait":
            return self.wait(query)
        self.send_json(404, {"errorMessage": f"no route {url.path}", "errorType": "NotFound"})

    def do_POST(self):
        url = self.record()
        body = self.read_body()
        parts = url.path[len(PREFIX):].strip("/").split("/") if url.path.startswith(PREFIX) else []
        if parts == ["init", "error"]:
            return self.answer("init_error", None, body)
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            return self.answer("response" if parts[2] == "response" else "error", parts[1], body)
        if url.path == "/control/enqueue":
            return self.enqueue(body)
        self.send_json(404, {"errorMessage": f"no route {url.path}", "errorType": "NotFound"})

    def do_PUT(self):
        url = self.record()
        body = self.read_body()
        if url.path == "/control/enqueue":
            return self.enqueue(body)
        if url.path == "/control/reset":
            with STATE:
                QUEUE.clear(); IN_FLIGHT.clear(); ANSWERED.clear(); RESULTS.clear()
                REJECTED.clear(); REQUESTS.clear(); NEXT_CALLS.clear()
                STATE.notify_all()
            return self.send_json(200, {"ok": True})
        self.send_json(404, {"errorMessage": f"no route {url.path}", "errorType": "NotFound"})

    # --- the runtime API -------------------------------------------------------------------
    def next_invocation(self):
        with STATE:
            NEXT_CALLS.append(now_ms())
            POLLING[0] += 1
            STATE.notify_all()
            try:
                while not QUEUE:
                    STATE.wait(0.1)
                    if not QUEUE and self.client_gone():
                        self.close_connection = True
                        return
                invocation = QUEUE.popleft()
            finally:
                POLLING[0] -= 1
            invocation["delivered_ms"] = now_ms()
            invocation["deadline_ms"] = invocation["delivered_ms"] + invocation["deadline_ms_from_now"]
            IN_FLIGHT[invocation["request_id"]] = invocation
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", invocation["request_id"]),
            ("Lambda-Runtime-Deadline-Ms", str(invocation["deadline_ms"])),
            ("Lambda-Runtime-Invoked-Function-Arn", invocation["function_arn"]),
            ("Lambda-Runtime-Trace-Id", invocation["trace_id"]),
        ]
        if invocation.get("client_context") is not None:
            headers.append(("Lambda-Runtime-Client-Context", json.dumps(invocation["client_context"])))
        if invocation.get("cognito_identity") is not None:
            headers.append(("Lambda-Runtime-Cognito-Identity", json.dumps(invocation["cognito_identity"])))
        try:
            self.send_body(200, invocation["body"], headers)
        except OSError:
            # The runtime went away as we answered: put the invocation back for the next one.
            with STATE:
                IN_FLIGHT.pop(invocation["request_id"], None)
                QUEUE.appendleft(invocation)
                STATE.notify_all()
            self.close_connection = True

    def answer(self, kind, request_id, body):
        received = now_ms()
        headers = {k.lower(): v for k, v in self.headers.items()}
        headers.update(self.trailers)
        with STATE:
            status, reply = self.settle(kind, request_id, body, received, headers)
            STATE.notify_all()
        self.send_json(status, reply)

    def settle(self, kind, request_id, body, received, headers):
        """Records one answer of the runtime; returns the status and body to send back."""
        if request_id is not None and request_id not in IN_FLIGHT:
            error_type = "InvalidStateTransition" if request_id in ANSWERED else "InvalidRequestID"
            REJECTED.append({"kind": kind, "request_id": request_id, "error_type": error_type,
                             "body": parse(body), "received_ms": received})
            return 400, {"errorMessage": f"request id {request_id}: {error_type}", "errorType": error_type}
        invocation = IN_FLIGHT.pop(request_id) if request_id is not None else None
        if request_id is not None:
            ANSWERED.add(request_id)
        if kind == "response" and len(body) > MAX_RESPONSE:
            # Lambda fails such an invocation with a function error of this type.
            RESULTS.append(self.result("error", invocation, received, 413, "Function.ResponseSizeTooLarge",
                                       headers, {"errorMessage": f"response of {len(body)} bytes",
                                                 "errorType": "Function.ResponseSizeTooLarge"}))
            return 413, {"errorMessage": f"response of {len(body)} bytes exceeds {MAX_RESPONSE}",
                         "errorType": "RequestEntityTooLarge"}
        error_type = headers.get("lambda-runtime-function-error-type") if kind != "response" else None
        RESULTS.append(self.result(kind, invocation, received, 202, error_type, headers, parse(body)))
        return 202, {"status": "OK"}

    @staticmethod
    def result(kind, invocation, received, status, error_type, headers, body):
        entry = {"kind": kind, "request_id": None, "status": status, "error_type": error_type,
                 "body": body, "headers": headers, "received_ms": received}
        if invocation is not None:
            entry.update({
                "request_id": invocation["request_id"],
                "delivered_ms": invocation["delivered_ms"],
                "deadline_ms": invocation["deadline_ms"],
                "elapsed_ms": received - invocation["delivered_ms"],
                "late": received > invocation["deadline_ms"],
            })
        return entry

    # --- the control API -------------------------------------------------------------------
    def enqueue(self, body):
        try:
            spec = json.loads(body or b"{}")
        except ValueError as error:
            return self.send_json(400, {"errorMessage": f"not JSON: {error}", "errorType": "BadRequest"})
        specs = spec if isinstance(spec, list) else [spec]
        if not all(isinstance(spec, dict) for spec in specs):
            return self.send_json(400, {"errorMessage": "each invocation is an object",
                                        "errorType": "BadRequest"})
        ids = []
        with STATE:
            for spec in specs:
                if "raw_event" in spec:
                    event = str(spec["raw_event"]).encode()
                else:
                    event = json.dumps(spec.get("event", {})).encode()
                invocation = {
                    "request_id": spec.get("request_id") or str(uuid.uuid4()),
                    "body": event,
                    "deadline_ms_from_now": int(spec.get("deadline_ms_from_now", DEFAULT_DEADLINE_MS)),
                    "function_arn": spec.get("function_arn", DEFAULT_ARN),
                    "trace_id": spec.get("trace_id") or trace_id(),
                    "client_context": spec.get("client_context"),
                    "cognito_identity": spec.get("cognito_identity"),
                }
                QUEUE.append(invocation)
                ids.append(invocation["request_id"])
            STATE.notify_all()
        self.send_json(200, {"request_id": ids[0]} if len(ids) == 1 else {"request_ids": ids})

    def state(self):
        return {"queued": [i["request_id"] for i in QUEUE], "in_flight": list(IN_FLIGHT),
                "polling": POLLING[0], "results": len(RESULTS), "rejected": list(REJECTED),
                "next_calls": list(NEXT_CALLS)}

    def wait(self, query):
        timeout = float(query.get("timeout", ["30"])[0])
        end = time.monotonic() + timeout
        if "polling" in query:
            want = int(query["polling"][0])
            done = lambda: POLLING[0] >= want
            value = lambda: {"polling": POLLING[0]}
        else:
            want = int(query.get("count", ["1"])[0])
            done = lambda: len(RESULTS) >= want
            value = lambda: list(RESULTS)
        status = 200
        with STATE:
            while not done():
                left = end - time.monotonic()
                if left <= 0:
                    status = 408
                    break
                STATE.wait(min(left, 0.5))
            answer = value()
        self.send_json(status, answer)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        # A runtime killed mid-request (the tests do that) is expected.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main():
    server = Server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
