#!/usr/bin/env python3
"""The SMTP server of `make chaos`: accepts every mail, records it, and can be told to refuse.

maildev stores and parses every mail and cannot refuse on demand; this sink only writes one JSON
line per accepted mail to --record: {"t": accept time (Unix seconds), "rcpt": [addresses],
"message_id": ..., "posting_id": ... (X-Notify-Posting-Id), "conn": connection number}. The
chaos driver counts deliveries, losses and duplicates from that file. Python's standard library
only (asyncio); one thread, a few thousand mails a second.

  smtp_sink.py --record PATH [--port 0]

Prints "listening on 127.0.0.1:PORT" once it listens. Control commands on any connection:
  XFAULT CODE SECONDS  -> every mail is answered CODE (e.g. 451) at the end of DATA, for SECONDS
  XSTAT                -> "250 <mails> <distinct recipients> <refused>"
SIGTERM or SIGINT flushes the record and ends it.
"""

import argparse
import asyncio
import json
import re
import signal
import sys
import time

MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<?([^>\r\n]*)>?", re.IGNORECASE | re.MULTILINE)
POSTING_ID = re.compile(rb"^X-Notify-Posting-Id:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
ADDRESS = re.compile(rb"<([^>]*)>")
MAX_LINE = 4096
MAX_MAIL = 10 * 1024 * 1024


class State:
    def __init__(self, record_path):
        self.record = open(record_path, "a", buffering=1 << 16)
        self.mails = 0
        self.refused = 0
        self.recipients = set()
        self.fault_code = 0
        self.fault_until = 0.0
        self.connections = 0

    def fault(self):
        if self.fault_code and time.monotonic() < self.fault_until:
            return self.fault_code
        return 0

    def accept(self, rcpt, data, conn):
        head = data[: data.find(b"\r\n\r\n") + 1 or len(data)]
        mid = MESSAGE_ID.search(head)
        pid = POSTING_ID.search(head)
        self.record.write(json.dumps({
            "t": round(time.time(), 6),
            "rcpt": rcpt,
            "message_id": mid.group(1).decode(errors="replace").strip() if mid else None,
            "posting_id": pid.group(1).decode(errors="replace").strip() if pid else None,
            "conn": conn,
        }, separators=(",", ":")) + "\n")
        self.mails += 1
        self.recipients.update(rcpt)

    def flush(self):
        self.record.flush()


class Session(asyncio.Protocol):
    def __init__(self, state):
        self.state = state
        state.connections += 1
        self.conn = state.connections
        self.buf = bytearray()
        self.in_data = False
        self.scan_from = 0
        self.rcpt = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"220 chaos-sink ESMTP\r\n")

    def data_received(self, data):
        self.buf += data
        out = []
        while True:
            if self.in_data:
                if not self.take_data(out):
                    break
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                if len(self.buf) > MAX_LINE:
                    out.append(b"500 line too long\r\n")
                    self.buf.clear()
                break
            line = bytes(self.buf[:end])
            del self.buf[: end + 2]
            reply = self.command(line)
            if reply is None:  # QUIT
                out.append(b"221 bye\r\n")
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            out.append(reply)
        if out:
            self.transport.write(b"".join(out))

    def take_data(self, out):
        # The body ends with CRLF . CRLF; an empty body is ". CRLF" at once.
        if self.buf.startswith(b".\r\n"):
            body, rest = b"", 3
        else:
            end = self.buf.find(b"\r\n.\r\n", max(0, self.scan_from - 4))
            if end < 0:
                self.scan_from = len(self.buf)
                if len(self.buf) > MAX_MAIL:
                    out.append(b"552 too big\r\n")
                    self.buf.clear()
                    self.in_data = False
                return False
            body, rest = bytes(self.buf[: end + 2]), end + 5
        del self.buf[:rest]
        self.in_data = False
        self.scan_from = 0
        code = self.state.fault()
        if code:
            self.state.refused += 1
            out.append(b"%d 4.3.0 chaos: try again later\r\n" % code)
        else:
            self.state.accept(self.rcpt, body, self.conn)
            out.append(b"250 2.0.0 accepted\r\n")
        self.rcpt = []
        return True

    def command(self, line):
        verb = line[:4].upper()
        if verb == b"EHLO":
            return b"250-chaos-sink\r\n250-8BITMIME\r\n250 PIPELINING\r\n"
        if verb == b"HELO":
            return b"250 chaos-sink\r\n"
        if verb == b"MAIL":
            self.rcpt = []
            return b"250 2.1.0 ok\r\n"
        if verb == b"RCPT":
            m = ADDRESS.search(line)
            address = (m.group(1) if m else line.partition(b":")[2].strip()).decode(errors="replace")
            self.rcpt.append(address.lower())
            return b"250 2.1.5 ok\r\n"
        if verb == b"DATA":
            if not self.rcpt:
                return b"503 5.5.1 no recipients\r\n"
            self.in_data = True
            return b"354 end with <CRLF>.<CRLF>\r\n"
        if verb == b"RSET":
            self.rcpt = []
            return b"250 2.0.0 ok\r\n"
        if verb == b"NOOP":
            return b"250 2.0.0 ok\r\n"
        if verb == b"QUIT":
            return None
        if verb == b"XSTA":  # XSTAT
            s = self.state
            return b"250 %d %d %d\r\n" % (s.mails, len(s.recipients), s.refused)
        if verb == b"XFAU":  # XFAULT CODE SECONDS
            try:
                _, code, seconds = line.split()
                self.state.fault_code = int(code)
                self.state.fault_until = time.monotonic() + float(seconds)
            except ValueError:
                return b"501 usage: XFAULT CODE SECONDS\r\n"
            return b"250 fault set\r\n"
        # Anything else (VRFY, EXPN, ...) is not part of what libcurl sends: refused as unknown.
        return b"500 5.5.1 command unrecognized\r\n"

    def connection_lost(self, exc):
        self.transport = None


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--record", required=True, help="JSON lines of accepted mails (appended)")
    args = p.parse_args()
    state = State(args.record)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Session(state), "127.0.0.1", args.port,
                                      backlog=256)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def flusher():
        while True:
            await asyncio.sleep(0.2)
            state.flush()

    task = asyncio.create_task(flusher())
    await stop.wait()
    task.cancel()
    server.close()
    state.flush()
    state.record.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
