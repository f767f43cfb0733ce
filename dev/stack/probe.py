#!/usr/bin/env python3
"""Small probes for stack.sh, so the shell script needs neither curl nor nc.

  probe.py free-ports N        N distinct free TCP ports on 127.0.0.1, one a line
  probe.py tcp PORT            exit 0 when 127.0.0.1:PORT accepts a connection
  probe.py http URL            exit 0 when URL answers with any HTTP status
  probe.py redis PORT          exit 0 when Redis on 127.0.0.1:PORT answers PING with PONG (not
                               while it is still loading its append-only file)
  probe.py pids DIR            processes started for the stack in DIR (marked by their
                               environment), except epmd, which Erlang shares between nodes
  probe.py render TEMPLATE     TEMPLATE with ${VAR} taken from the environment, to stdout
"""
import os
import socket
import string
import sys
import urllib.error
import urllib.request


def free_ports(count):
    # Hold every socket open until all are bound, so the ports are distinct.
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        for s in socks:
            print(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return 0


def tcp(port):
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
            return 0
    except OSError:
        return 1


def http(url):
    try:
        with urllib.request.urlopen(url, timeout=2):
            return 0
    except urllib.error.HTTPError:
        return 0  # it answered
    except (OSError, ValueError):
        return 1


def redis(port):
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=1) as s:
            s.settimeout(2)
            s.sendall(b"PING\r\n")
            return 0 if s.recv(64).startswith(b"+PONG") else 1
    except OSError:
        return 1


def pids(stack_dir):
    marker = ("NOTIFY_STACK_DIR=" + stack_dir).encode() + b"\0"
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read() + b"\0"
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if (b"\0" + marker) in (b"\0" + environ) and comm != "epmd":
            print(entry)
    return 0


def render(template):
    with open(template) as f:
        sys.stdout.write(string.Template(f.read()).substitute(os.environ))
    return 0


def main(argv):
    commands = {"free-ports": lambda a: free_ports(int(a)), "tcp": tcp, "http": http,
                "redis": redis, "pids": pids, "render": render}
    if len(argv) != 3 or argv[1] not in commands:
        sys.stderr.write(__doc__)
        return 2
    return commands[argv[1]](argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
