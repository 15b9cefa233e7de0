"""A webhook receiver on loopback for battleplan's channel tests.

Every request is checked with the `standardwebhooks` package from PyPI (the Standard Webhooks
reference implementation, independent of the sender's): a request whose signature, id or
timestamp does not verify is answered 401. Each attempt is appended as one JSON line to
OUT/attempts.jsonl (flushed before the answer goes):

    {"id": webhook-id, "customer": ..., "status": answered or null (no answer),
     "verified": true/false, "duplicate": true when the id was taken before, "body": the JSON}

A receiver that follows the specification keeps the ids it took and takes a repeat as a no-op
(answered 200 again, marked "duplicate").

Faults are chosen per customer by a JSON file (--faults FILE) mapping a customer id to one of:
- "500xN" answered 500 for its first N attempts, then taken ("500" always 500);
- "429xN" answered 429 with `Retry-After: 1` for its first N attempts, then taken;
- "410"   answered 410 Gone, always;
- "400"   answered 400, always;
- "hangxN" no answer for its first N attempts (the request is read and held until the client
          gives up), then taken.

Usage: python webhook_receiver.py OUT --secret whsec_... [--faults FILE] [--port P]
It prints `webhook on 127.0.0.1:PORT` once it listens (PORT 0 picks a free one).
"""

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class State:
    def __init__(self, out, secret, faults):
        self.lock = threading.Lock()
        self.log = open(os.path.join(out, "attempts.jsonl"), "a", encoding="utf-8")
        self.webhook = Webhook(secret)
        self.faults = faults
        self.tries = {}
        self.taken = set()

    def record(self, entry):
        with self.lock:
            self.log.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.log.flush()


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, headers=()):
            body = json.dumps({"status": status}).encode()
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            data = self.rfile.read(length)
            headers = {key: value for key, value in self.headers.items()}
            entry = {"id": self.headers.get("webhook-id"), "customer": None,
                     "status": None, "verified": False, "duplicate": False}
            try:
                payload = state.webhook.verify(data, headers)
                entry["verified"] = True
                entry["body"] = payload
                entry["customer"] = payload.get("data", {}).get("customer")
            except (WebhookVerificationError, ValueError) as error:
                entry["error"] = str(error)
                entry["status"] = 401
                state.record(entry)
                self.answer(401)
                return
            customer = entry["customer"]
            fault = state.faults.get(customer, "")
            with state.lock:
                seen = state.tries.get(entry["id"], 0)
                state.tries[entry["id"]] = seen + 1
            matched = re.fullmatch(r"(500|429|hang)(?:x(\d+))?", fault)
            if matched and (matched.group(2) is None or seen < int(matched.group(2))):
                kind = matched.group(1)
                if kind == "hang":
                    state.record(entry)
                    # Held until the client gives up; the answer, if any, goes nowhere.
                    time.sleep(30)
                    return
                entry["status"] = int(kind)
                state.record(entry)
                self.answer(int(kind), [("Retry-After", "1")] if kind == "429" else [])
                return
            if fault in ("410", "400"):
                entry["status"] = int(fault)
                state.record(entry)
                self.answer(int(fault))
                return
            with state.lock:
                entry["duplicate"] = entry["id"] in state.taken
                state.taken.add(entry["id"])
            entry["status"] = 200
            state.record(entry)
            self.answer(200)

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--faults")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    faults = {}
    if args.faults:
        with open(args.faults, encoding="utf-8") as f:
            faults = json.load(f)
    state = State(args.out, args.secret, faults)
    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            # A client that went away mid-request (a killed daemon, a timeout): not news.
            error = sys.exc_info()[1]
            if isinstance(error, (ConnectionError, TimeoutError)):
                return
            super().handle_error(request, client_address)

    server = Server(("127.0.0.1", args.port), make_handler(state))
    server.daemon_threads = True
    print("webhook on 127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
