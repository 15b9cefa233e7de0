"""A real SMTP server on loopback for battleplan's channel tests (aiosmtpd, from PyPI).

Every message it accepts is written whole to OUT/NNNNNN.eml, and beside it OUT/NNNNNN.json:
the envelope, every header (decoded, RFC 2047 words included) and the plain text and HTML parts
as Python's standard `email` package parses them (an implementation independent of the
sender's). Each file is written to a temporary name, then renamed. Faults are chosen by the
recipient's local part, so that one run can mix them:

- `defer<N>-...@`   answered 451 at RCPT for its first N tries, then taken;
- `unknown-...@`    answered 550 5.1.1 at RCPT (no such mailbox), always;
- `relay-...@`      answered 550 5.7.1 at RCPT (relaying denied: the server refuses us);
- `reject-...@`     answered 554 5.7.1 after the data (the message refused), always;
- `stall-...@`      the data is read, and no answer ever comes (the client must time out);
                    the message is written first: it did arrive.

Usage: python smtp_server.py OUT [--port P] [--discard]
It prints `smtp on 127.0.0.1:PORT` once it listens (PORT 0 picks a free one), and stops when
its standard input ends.

`--discard` (for benchmarks, orchestrator/benches/smtp_send.sh): nothing is parsed and no
message is written; the server only counts what it takes. About every 0.1 s, and once more when
it stops, it writes OUT/stats.json (`count`, and the wall-clock instants `first` and `last` at
which the first and the last message taken were read whole, Unix seconds) and appends to
OUT/keys.txt the `X-Battleplan-Key` of each message taken since (`-` for a message without one).
The faults above apply all the same.
"""

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import os
import re
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, out):
        self.out = out
        self.counter = itertools.count(1)
        self.tries = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        deferred = re.match(r"defer(\d+)-", local)
        if deferred:
            seen = self.tries.get(address, 0)
            self.tries[address] = seen + 1
            if seen < int(deferred.group(1)):
                return "451 4.3.0 mailbox busy, try again later"
        if local.startswith("unknown-"):
            return "550 5.1.1 no such mailbox here"
        if local.startswith("relay-"):
            return "550 5.7.1 relaying denied: authenticate first"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        local_parts = [rcpt.split("@", 1)[0].lower() for rcpt in envelope.rcpt_tos]
        if any(part.startswith("reject-") for part in local_parts):
            return "554 5.7.1 message refused by policy"
        number = next(self.counter)
        name = os.path.join(self.out, "%06d.eml" % number)
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        with open(name + ".tmp", "wb") as f:
            f.write(data)
        os.replace(name + ".tmp", name)
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        summary = {
            "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.rcpt_tos),
            "headers": [[key, str(value)] for key, value in parsed.items()],
            "text": None,
            "html": None,
        }
        for part in parsed.walk():
            kind = part.get_content_type()
            # The wire's CRLF line ends, as the lines they are.
            if kind == "text/plain" and summary["text"] is None:
                summary["text"] = part.get_content().replace("\r\n", "\n")
            elif kind == "text/html" and summary["html"] is None:
                summary["html"] = part.get_content().replace("\r\n", "\n")
        summary_name = name[: -len(".eml")] + ".json"
        with open(summary_name + ".tmp", "w", encoding="utf-8") as f:
            json.dump(summary, f, ensure_ascii=False)
        os.replace(summary_name + ".tmp", summary_name)
        if any(part.startswith("stall-") for part in local_parts):
            await asyncio.sleep(3600)
        return "250 2.0.0 queued as %06d" % number


KEY_HEADER = re.compile(rb"^X-Battleplan-Key: *([^\r\n]*)", re.MULTILINE | re.IGNORECASE)


class DiscardHandler(Handler):
    """Counts what it takes and keeps only each message's key (see `--discard`)."""

    def __init__(self, out):
        super().__init__(out)
        self.lock = threading.Lock()
        self.count = 0
        self.first = None
        self.last = None
        self.keys = []
        self.written = -1

    async def handle_DATA(self, server, session, envelope):
        local_parts = [rcpt.split("@", 1)[0].lower() for rcpt in envelope.rcpt_tos]
        if any(part.startswith("reject-") for part in local_parts):
            return "554 5.7.1 message refused by policy"
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        head = data.split(b"\r\n\r\n", 1)[0]
        found = KEY_HEADER.search(head)
        key = found.group(1).decode("utf-8", "replace").strip() if found else "-"
        now = time.time()
        with self.lock:
            self.count += 1
            number = self.count
            if self.first is None:
                self.first = now
            self.last = now
            self.keys.append(key)
        if any(part.startswith("stall-") for part in local_parts):
            await asyncio.sleep(3600)
        return "250 2.0.0 queued as %06d" % number

    def flush(self):
        with self.lock:
            count, first, last = self.count, self.first, self.last
            keys, self.keys = self.keys, []
        if keys:
            with open(os.path.join(self.out, "keys.txt"), "a", encoding="utf-8") as f:
                f.write("".join(key + "\n" for key in keys))
        if count != self.written:
            name = os.path.join(self.out, "stats.json")
            with open(name + ".tmp", "w", encoding="utf-8") as f:
                json.dump({"count": count, "first": first, "last": last}, f)
            os.replace(name + ".tmp", name)
            self.written = count


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--discard", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    port = args.port
    if port == 0:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    handler = DiscardHandler(args.out) if args.discard else Handler(args.out)
    stopping = threading.Event()

    def flusher():
        while not stopping.wait(0.1):
            handler.flush()

    if args.discard:
        handler.flush()
        threading.Thread(target=flusher, daemon=True).start()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        decode_data=False,
        data_size_limit=10 * 1024 * 1024,
    )
    controller.start()
    print("smtp on 127.0.0.1:%d" % port, flush=True)
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
        if args.discard:
            stopping.set()
            handler.flush()


if __name__ == "__main__":
    main()
