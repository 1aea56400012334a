#!/usr/bin/env python3
"""A local stand-in for the data platform's fetch API, its presigned store, and Slack's Web API.

It speaks the real protocols (CONTRACT.md §1 and §2), on 127.0.0.1 only, and misbehaves on
demand so that the tests can prove the client's retries, timeouts and error handling.

    python3 fake_platform.py            # prints "listening on PORT" and serves until killed

Control endpoints (used by the tests):
    PUT  /control/documents/<Type>      body: a JSON array of envelopes to serve for <Type>
    PUT  /control/generate/<Type>       body: {"count": N, "data": {...}, "first_timestamp": T}
    PUT  /control/raw/<Type>            body: served as <Type>'s body byte for byte (bent JSON)
    PUT  /control/documents-file/<Type> body: {"path": "/abs/file.json"}: serves that file (a
                                        JSON array) as it is, whatever the window, with sendfile,
                                        so that the benchmark's large windows never go through
                                        a request body or Python's JSON
    PUT  /control/faults                body: {"api_503": n, "api_429": n, "store_503": n,
                                               "retry_after": s (the 429's Retry-After, 1),
                                               "api_500_echo": n (a 500 echoing the headers),
                                               "expire": n, "slow_first_byte": s, "cut_off": true,
                                               "hold_first_byte": true (until /control/release),
                                               "stall_after": n (a documents body after n
                                               served ones sends half, then holds until
                                               /control/release),
                                               "slack_429": n, "slack_slow": s, "slack_500": n,
                                               "url_key": "url"|"all_docs_url",
                                               "api_503_endless": n, "store_503_endless": n,
                                               "slack_503_endless": n, "api_200_endless": n
                                               (a body that never ends, up to ENDLESS_CAP),
                                               "api_redirect": URL, "store_redirect": URL,
                                               "slack_redirect": URL (a 302 / 307 / 302 to
                                               URL, for every request),
                                               "store_403_quote": n (S3's 403 quoting the
                                               signature and the decoded credential),
                                               "slack_hold": true (until /control/release),
                                               "slow_from_body": n (with slow_first_byte: only
                                               the nth store body and later ones are slow),
                                               "slow_on_multiple_of": M (only windows starting
                                               at a multiple of M are slow),
                                               "in_flight_span": S (in_flight counts windows
                                               by from // S: a backfill's shards),
                                               "fail_window": {"from": F, "times": n,
                                               "status": 400, "type": T} (the fetch API
                                               answers status to T's window starting at F, n
                                               times; -1: always)}
    PUT  /control/credentials           body: {"api_key": "...", "slack_token": "..."}: the only
                                        key and token accepted from now on (a rotation); an
                                        old key gets a 403 that echoes it, an old token
                                        Slack's invalid_auth
    GET  /control/requests              every request seen: method, path, query, headers
    GET  /control/sent                  bytes written of each endless body before the client
                                        hung up (or ENDLESS_CAP)
    GET  /control/in_flight             {"now": n, "max": n}: distinct windows (a backfill's
                                        shards) whose store bodies were being served at once
"""

import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

CREDENTIALS = {"api_key": "test-api-key", "slack_token": "xoxb-test-token"}
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "slack"

LOCK = threading.Lock()
DOCUMENTS = {}  # type -> list of envelopes (dicts)
GENERATED = {}  # type -> {"count", "data", "first_timestamp"}
RAW = {}  # type -> bytes served as the body
FILES = {}  # type -> path of a JSON array served as it is
RELEASE = threading.Event()  # lets held first bytes go
FAULTS = {}
REQUESTS = []
TOKENS = {}  # token -> (type, from, to)
CHANNELS = {"C012AB3CD": "general", "C024BE91L": "fun"}
SIGNATURE = "deadbeefsecret"
CREDENTIAL = "AKIASECRET/20261203/us-east-1/s3/aws4_request"
# An endless body stops here, so that a client that reads it all still ends (and fails the
# test on the bytes it took) instead of hanging.
ENDLESS_CAP = 256 << 20
SENT = []  # bytes written of each endless body
BODIES = [0]  # store bodies served so far
IN_FLIGHT = {}  # (from, to) -> store bodies of that window being served
MAX_IN_FLIGHT = [0]  # the most distinct windows served at once


def take_fault(name):
    """Consumes one occurrence of a counted fault."""
    with LOCK:
        left = FAULTS.get(name, 0)
        if isinstance(left, int) and left > 0:
            FAULTS[name] = left - 1
            return True
    return False


def take_stall():
    """Counts down "stall_after" by one served body; at zero, this body stalls (once)."""
    with LOCK:
        left = FAULTS.get("stall_after")
        if not isinstance(left, int) or left < 0:
            return False
        FAULTS["stall_after"] = left - 1
        return left == 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers are written in pieces; without this each reused connection stalls ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def record(self):
        url = urlparse(self.path)
        with LOCK:
            REQUESTS.append({
                "method": self.command,
                "path": url.path,
                "query": url.query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            })
        return url

    def send_json(self, status, value, headers=()):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_endless(self, status):
        """Answers `status` with a chunked body that never ends (up to ENDLESS_CAP), and records
        how much of it the client took before hanging up."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"x" * 65536
        framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        sent = 0
        self.close_connection = True
        try:
            while sent < ENDLESS_CAP:
                self.wfile.write(framed)
                sent += len(chunk)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with LOCK:
                SENT.append(sent)

    def send_redirect(self, status, location):
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def read_body(self):
        length = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(length) or b"null")

    def do_PUT(self):
        url = self.record()
        if url.path.startswith("/control/raw/"):
            length = int(self.headers.get("Content-Length", "0"))
            with LOCK:
                RAW[url.path[len("/control/raw/"):]] = self.rfile.read(length)
            return self.send_json(200, {"ok": True})
        body = self.read_body()
        with LOCK:
            if url.path.startswith("/control/documents/"):
                DOCUMENTS[url.path.rsplit("/", 1)[1]] = body
            elif url.path.startswith("/control/generate/"):
                GENERATED[url.path.rsplit("/", 1)[1]] = body
            elif url.path.startswith("/control/documents-file/"):
                FILES[url.path.rsplit("/", 1)[1]] = body["path"]
            elif url.path == "/control/faults":
                FAULTS.clear()
                FAULTS.update(body)
            elif url.path == "/control/credentials":
                CREDENTIALS.update(body)
            elif url.path == "/control/release":
                RELEASE.set()
            elif url.path == "/control/reset":
                DOCUMENTS.clear(); GENERATED.clear(); RAW.clear(); FILES.clear(); FAULTS.clear()
                REQUESTS.clear(); RELEASE.clear(); SENT.clear()
                BODIES[0] = 0; IN_FLIGHT.clear(); MAX_IN_FLIGHT[0] = 0
        self.send_json(200, {"ok": True})

    def do_GET(self):
        url = self.record()
        query = parse_qs(url.query)
        if url.path == "/control/requests":
            with LOCK:
                return self.send_json(200, list(REQUESTS))
        if url.path == "/control/sent":
            with LOCK:
                return self.send_json(200, list(SENT))
        if url.path == "/control/in_flight":
            with LOCK:
                return self.send_json(200, {"now": len(IN_FLIGHT), "max": MAX_IN_FLIGHT[0]})
        if url.path.startswith("/get_docs/"):
            return self.fetch_api(url.path[len("/get_docs/"):], query)
        if url.path.startswith("/store/"):
            return self.store(url.path[len("/store/"):], query)
        if url.path == "/api/conversations.info":
            return self.slack(query)
        self.send_json(404, {"message": "Not Found"})

    def fetch_api(self, type_name, query):
        given = self.headers.get("x-api-key")
        with LOCK:
            expected = CREDENTIALS["api_key"]
        if given != expected:
            # Echoes what it was given, as some gateways do: the client must scrub it.
            return self.send_json(403, {"message": "Forbidden", "x-api-key": given})
        with LOCK:
            redirect = FAULTS.get("api_redirect")
        if redirect:
            return self.send_redirect(302, redirect)
        if take_fault("api_503_endless"):
            return self.send_endless(503)
        if take_fault("api_200_endless"):
            return self.send_endless(200)
        if take_fault("api_503"):
            return self.send_json(503, {"message": "Service Unavailable"})
        if take_fault("api_429"):
            with LOCK:
                retry_after = str(FAULTS.get("retry_after", 1))
            return self.send_json(429, {"message": "Too Many Requests"}, [("Retry-After", retry_after)])
        if take_fault("api_500_echo"):
            # Some gateways echo the request in their error page, secrets and all.
            return self.send_json(500, {"message": "Internal error", "request_headers": dict(self.headers)})
        try:
            window = (int(query["timestamp_from"][0]), int(query["timestamp_to"][0]))
        except (KeyError, ValueError):
            return self.send_json(400, {"message": "timestamp_from and timestamp_to are required"})
        with LOCK:
            failing = FAULTS.get("fail_window")
            fail = (isinstance(failing, dict) and failing.get("from") == window[0]
                    and failing.get("type", type_name) == type_name
                    and failing.get("times", 0) != 0)
            if fail and failing["times"] > 0:
                failing["times"] -= 1
        if fail:
            return self.send_json(failing.get("status", 400), {"message": "window refused on purpose"})
        token = f"t{len(TOKENS)}"
        with LOCK:
            TOKENS[token] = (type_name, *window)
            key = FAULTS.get("url_key", "url")
        port = self.server.server_address[1]
        credential = CREDENTIAL.replace("/", "%2F")
        presigned = f"http://127.0.0.1:{port}/store/{token}?X-Amz-Credential={credential}&X-Amz-Signature={SIGNATURE}"
        self.send_json(200, {key: presigned})

    def store(self, token, query):
        if "X-Amz-Signature" not in query:
            return self.send_json(403, {"message": "missing signature"})
        if take_fault("expire"):
            body = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        if take_fault("store_503"):
            return self.send_json(503, {"message": "Slow Down"})
        with LOCK:
            redirect = FAULTS.get("store_redirect")
        if redirect:
            return self.send_redirect(307, redirect)
        if take_fault("store_503_endless"):
            return self.send_endless(503)
        if take_fault("store_403_quote"):
            # S3's answer to a signature it does not accept quotes what it was given.
            body = ("<Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>AKIASECRET</AWSAccessKeyId>"
                    f"<SignatureProvided>{SIGNATURE}</SignatureProvided>"
                    f"<StringToSign>AWS4-HMAC-SHA256 {CREDENTIAL}</StringToSign></Error>").encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        with LOCK:
            type_name, first, last = TOKENS[token]
            BODIES[0] += 1
            slow = FAULTS.get("slow_first_byte", 0)
            if BODIES[0] < FAULTS.get("slow_from_body", 0):
                slow = 0
            if first % FAULTS.get("slow_on_multiple_of", 1) != 0:
                slow = 0
            span = FAULTS.get("in_flight_span", 0)
            key = first // span if span else (first, last)
            IN_FLIGHT[key] = IN_FLIGHT.get(key, 0) + 1
            MAX_IN_FLIGHT[0] = max(MAX_IN_FLIGHT[0], len(IN_FLIGHT))
        try:
            return self.serve_body(token, type_name, first, last, slow)
        finally:
            with LOCK:
                IN_FLIGHT[key] -= 1
                if IN_FLIGHT[key] == 0:
                    del IN_FLIGHT[key]

    def serve_body(self, token, type_name, first, last, slow):
        with LOCK:
            cut_off = FAULTS.get("cut_off", False)
            hold = FAULTS.get("hold_first_byte", False)
        if slow:
            time.sleep(slow)
        if hold:
            RELEASE.wait(timeout=3600)
        if type_name in GENERATED:
            return self.generated(type_name, first, last, cut_off)
        if type_name in RAW:
            body = RAW[type_name]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.wfile.write(body)
        with LOCK:
            served_file = FILES.get(type_name)
        if served_file is not None:
            return self.file(served_file)
        with LOCK:
            documents = [d for d in DOCUMENTS.get(type_name, []) if first <= d.get("timestamp", first) <= last]
        body = json.dumps(documents).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut_off:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if take_stall():
            # Half the body, then nothing until /control/release: a reader stopped mid-window.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            RELEASE.wait(timeout=3600)
            self.close_connection = True
            return
        self.wfile.write(body)

    def generated(self, type_name, first, last, cut_off):
        """Streams a large array without holding it: every element has the same length."""
        spec = GENERATED[type_name]
        data = json.dumps(spec["data"], separators=(",", ":"))
        start = spec.get("first_timestamp", first)
        count = spec["count"]
        def element(i):
            return '{"id":"%s","timestamp":%d,"type":"%s","data":%s}' % (
                "g%023d" % i, start, type_name, data)
        size = len(element(0))
        length = 2 + count * size + max(count - 1, 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        sent = 0
        chunk = []
        self.wfile.write(b"[")
        for i in range(count):
            chunk.append(element(i))
            if len(chunk) == 500 or i == count - 1:
                text = ("," if sent else "") + ",".join(chunk)
                self.wfile.write(text.encode())
                sent += len(chunk)
                chunk = []
                if cut_off and sent >= count // 2:
                    self.close_connection = True
                    return
        self.wfile.write(b"]")

    def file(self, path):
        """Sends a file from disk with sendfile: the benchmark's serving costs almost nothing."""
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.flush()
            self.connection.sendfile(file)

    def slack(self, query):
        given = self.headers.get("Authorization")
        with LOCK:
            expected = f"Bearer {CREDENTIALS['slack_token']}"
        if given is None:
            return self.send_json(200, {"ok": False, "error": "not_authed"})
        if given != expected:
            return self.send_json(200, {"ok": False, "error": "invalid_auth"})
        with LOCK:
            slow = FAULTS.get("slack_slow", 0)
            hold = FAULTS.get("slack_hold", False)
        if slow:
            time.sleep(slow)
        if hold:
            RELEASE.wait(timeout=3600)
        if take_fault("slack_503_endless"):
            return self.send_endless(503)
        with LOCK:
            redirect = FAULTS.get("slack_redirect")
        if redirect:
            return self.send_redirect(302, redirect)
        if take_fault("slack_500"):
            return self.send_json(500, {"ok": False, "error": "internal_error"})
        if take_fault("slack_429"):
            return self.send_json(429, {"ok": False, "error": "ratelimited"}, [("Retry-After", "1")])
        channel = query.get("channel", [""])[0]
        if channel in CHANNELS:
            answer = json.loads((FIXTURES / "conversations.info.ok.json").read_text())
            answer["channel"]["id"] = channel
            answer["channel"]["name"] = CHANNELS[channel]
            return self.send_json(200, answer)
        answer = json.loads((FIXTURES / "conversations.info.channel_not_found.json").read_text())
        self.send_json(200, answer)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (a timeout test) or a body cut off on purpose is expected.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main():
    server = Server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
