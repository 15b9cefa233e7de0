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

Usage: python smtp_server.py OUT [--port P]
It prints `smtp on 127.0.0.1:PORT` once it listens (PORT 0 picks a free one).
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    port = args.port
    if port == 0:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    controller = Controller(
        Handler(args.out),
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


if __name__ == "__main__":
    main()
