"""DingTalk's and WeCom's group robots, as battleplan's tests see them, on loopback.

- POST /dingtalk/robot/send?access_token=T[&timestamp=MS&sign=S]: with --dingtalk-secret, the
  signature is checked exactly as DingTalk's documentation computes it (its Python example:
  HMAC-SHA256 of "timestamp\\nsecret" under the secret, base64), and the timestamp must be
  within an hour; a request that fails is answered errcode 310000, as DingTalk does.
- POST /wecom/cgi-bin/webhook/send?key=K.

Both answer HTTP 200 with {"errcode": 0, "errmsg": "ok"}; with --busy N, the first N requests
are answered DingTalk's 130101 / WeCom's 45009 (sending too fast). Each request is appended as a
JSON line to OUT/requests.jsonl: {"robot", "token", "verified", "errcode", "body"}.

Usage: python robot_receiver.py OUT [--dingtalk-secret S] [--busy N] [--port P]
It prints `robots on 127.0.0.1:PORT` once it listens.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def documented_sign(timestamp, secret):
    """DingTalk's documented example, step by step."""
    secret_enc = secret.encode("utf-8")
    string_to_sign = "{}\n{}".format(timestamp, secret)
    string_to_sign_enc = string_to_sign.encode("utf-8")
    hmac_code = hmac.new(secret_enc, string_to_sign_enc, digestmod=hashlib.sha256).digest()
    return base64.b64encode(hmac_code).decode("ascii")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--dingtalk-secret")
    parser.add_argument("--busy", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "requests.jsonl"), "a", encoding="utf-8")
    lock = threading.Lock()
    state = {"seen": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            entry = {"robot": None, "token": None, "verified": True, "errcode": 0, "body": body}
            if url.path == "/dingtalk/robot/send":
                entry["robot"] = "dingtalk"
                entry["token"] = query.get("access_token", [None])[0]
                if args.dingtalk_secret:
                    timestamp = query.get("timestamp", [""])[0]
                    sign = query.get("sign", [""])[0]
                    fresh = timestamp.isdigit() and abs(time.time() * 1000 - int(timestamp)) < 3600_000
                    entry["verified"] = fresh and hmac.compare_digest(
                        sign, documented_sign(timestamp, args.dingtalk_secret))
                    if not entry["verified"]:
                        entry["errcode"] = 310000
            elif url.path == "/wecom/cgi-bin/webhook/send":
                entry["robot"] = "wecom"
                entry["token"] = query.get("key", [None])[0]
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with lock:
                state["seen"] += 1
                if entry["errcode"] == 0 and state["seen"] <= args.busy:
                    entry["errcode"] = 130101 if entry["robot"] == "dingtalk" else 45009
                log.write(json.dumps(entry, ensure_ascii=False) + "\n")
                log.flush()
            answer = json.dumps({"errcode": entry["errcode"],
                                 "errmsg": "ok" if entry["errcode"] == 0 else "refused"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("robots on 127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
