#!/usr/bin/env python3
"""`make chaos`: the whole pipeline under faults, counted from the inbox (not part of make test).

Each run starts its own broker stack (dev/stack/stack.sh in test mode, in BUILD_DIR/chaos-stack:
free ports, fresh data), an SMTP sink that records every accepted mail and can be told to answer
451 (tests/chaos/smtp_sink.py), and runs etl_notifications and worker_notifications as child
processes of this script, so that they can be `kill -9`ed and restarted. It then produces N
sign-ups (users of the development Auth service in a zone where it is daytime) in bursts into
Kafka, and right after each burst, at a random moment while the pipeline is busy, injects one
fault, in a random order:

  the ETL kill -9ed and restarted (3 times)    the worker kill -9ed and restarted (3 times)
  RabbitMQ restarted                           Kafka unreachable (SIGSTOP) for --outage s
  Redis (the delivery ledger) restarted        Auth answering 503 for --outage s
  SMTP answering 451 for --outage s

A control group of already expired sign-ups (1 % of N) travels with them: none may be mailed.
The run waits until everything has drained (every user mailed, every queue empty, consumer lag
0) or --drain-timeout, and counts from the sink's record: delivered, lost, duplicates (each with
the fault it followed, from the send times, the fault log and the services' logs), expired mail
sent, crashes (a service that exited without being killed) and the time to drain. Target: every
user mailed, 0 lost, 0 expired sent, 0 crashes, and no more duplicates than worker kills x
SMTP_CONCURRENCY, each following a worker kill. The runs' figures go to --out
(documentation/reliability.md). Python's standard library and kcat only.

usage: tests/chaos/chaos.py [--build-dir build] [--n 10000] [--runs 3] [--out FILE] ...
"""

import argparse
import datetime
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STACK = os.path.join(SOURCE_DIR, "dev", "stack", "stack.sh")
SINK = os.path.join(SOURCE_DIR, "tests", "chaos", "smtp_sink.py")
TOPIC = "notify_events"
EXCHANGE = "notifications"
WELCOME_TTL_S = 86400  # the ETL's WELCOME_TTL, set explicitly below
# The development broker's settings of `make up` (dev/stack/services.conf.in).
KAFKA_CONSUMER_CONFIG = "fetch.wait.max.ms=50,session.timeout.ms=10000,heartbeat.interval.ms=1000"
RESTART_DELAY_S = 1.0  # as supervisord's startsecs: a killed service is back after a second
SUPERVISOR_STATE = re.compile(
    r"^(\S+)\s+(RUNNING|STOPPED|STARTING|BACKOFF|STOPPING|EXITED|FATAL|UNKNOWN)\b")

FAULT_LABELS = {
    "etl_kill": "ETL kill -9",
    "worker_kill": "worker kill -9",
    "rabbitmq_restart": "RabbitMQ restart",
    "kafka_outage": "Kafka unreachable",
    "redis_restart": "Redis restart",
    "auth_503": "Auth 503",
    "smtp_451": "SMTP 451",
}


class ChaosError(Exception):
    pass


START = time.monotonic()


def log(message):
    print(f"chaos [{time.monotonic() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--build-dir", default="build", help="a build with the services and dev tools")
    p.add_argument("--n", type=int, default=10_000, help="sign-ups (users to mail) per run")
    p.add_argument("--runs", type=int, default=3, help="runs in a row, each on a fresh stack")
    p.add_argument("--out", default="documentation/reliability.md",
                   help="the page written with every run's figures ('' writes none)")
    p.add_argument("--smtp-concurrency", type=int, default=4, help="SMTP_CONCURRENCY of the worker")
    p.add_argument("--smtp-timeout", default="10s",
                   help="SMTP_TIMEOUT of the worker (the ledger's lease defaults to twice it)")
    p.add_argument("--outage", type=float, default=10.0,
                   help="seconds Kafka is unreachable, Auth answers 503, SMTP answers 451")
    p.add_argument("--kills", type=int, default=3, help="kill -9 of the ETL and of the worker, each")
    p.add_argument("--ledger", default="auto",
                   help="LEDGER_URL of the worker: auto (the stack's Redis if it has one, else "
                        "none), none, or a URL")
    p.add_argument("--expired-share", type=float, default=0.01,
                   help="already expired sign-ups produced besides N, as a share of N")
    p.add_argument("--drain-timeout", type=float, default=900.0,
                   help="seconds after the last burst until everything must have drained")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds the drained state must hold (late duplicates show up in it)")
    p.add_argument("--seed", type=int, help="random seed of the first run (default: from time)")
    p.add_argument("--keep-stack", action="store_true", help="leave the last run's stack up")
    p.add_argument("--from-results", metavar="JSON",
                   help="write the page from saved results instead of running")
    args = p.parse_args()
    if args.n < 1 or args.runs < 1 or args.smtp_concurrency < 1:
        p.error("--n, --runs and --smtp-concurrency must be at least 1")
    return args


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def daytime_zone(now=None):
    """An IANA zone where it is about 13:00 now, so quiet hours (22:00-08:00) defer nothing
    during a run. Etc/GMT-N is UTC+N (POSIX signs)."""
    hour = datetime.datetime.fromtimestamp(now or time.time(), datetime.timezone.utc).hour
    offset = (13 - hour) % 24
    if offset > 12:
        offset -= 24
    if offset == 0:
        return "Etc/UTC", 0
    return (f"Etc/GMT-{offset}" if offset > 0 else f"Etc/GMT+{-offset}"), offset


def http_json(method, url, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(url, method=method, data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as res:
        return json.loads(res.read() or b"null")


def base_env():
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.setdefault("PATH", "/usr/bin:/bin")
    return env


# ----- processes this script owns -----

class Service:
    """One of the pipeline's services, run as a child: started, kill -9ed and restarted, and
    watched for exits nobody asked for (crashes). Each incarnation has its own log file."""

    def __init__(self, name, binary, env, log_dir, on_crash):
        self.name = name
        self.binary = binary
        self.env = env
        self.log_dir = log_dir
        self.on_crash = on_crash
        self.lock = threading.RLock()
        self.proc = None
        self.lives = []  # {"name", "pid", "start", "end", "how", "log", "code"}
        self.stopping = False

    @property
    def current(self):
        return self.lives[-1] if self.lives else None

    def start(self):
        with self.lock:
            label = f"{self.name}-{len(self.lives) + 1}"
            path = os.path.join(self.log_dir, f"{label}.log")
            with open(path, "wb") as out:
                self.proc = subprocess.Popen([self.binary], env=self.env, cwd=SOURCE_DIR,
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            self.lives.append({"name": label, "pid": self.proc.pid, "start": time.time(),
                               "end": None, "how": None, "log": path, "code": None})
            return label

    def kill9(self):
        """kill -9 now; restarted after RESTART_DELAY_S. Returns the killed incarnation."""
        with self.lock:
            life = self.current
            life["how"] = "killed"
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            life["end"] = time.time()
            life["code"] = self.proc.returncode
        time.sleep(RESTART_DELAY_S)
        with self.lock:
            self.start()
        return life

    def check(self):
        """Called often: an exit nobody asked for is a crash; the service is restarted."""
        with self.lock:
            if self.proc is None or self.stopping or self.proc.poll() is None:
                return
            life = self.current
            if life["how"] is not None:
                return
            life["how"] = "crashed"
            life["end"] = time.time()
            life["code"] = self.proc.returncode
        self.on_crash(self.name, life)
        time.sleep(RESTART_DELAY_S)
        with self.lock:
            if not self.stopping:
                self.start()

    def stop(self, timeout=30):
        with self.lock:
            self.stopping = True
            if self.proc is None or self.proc.poll() is not None:
                return
            life = self.current
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{life['name']} did not stop in {timeout} s: killing it")
                self.proc.kill()
                self.proc.wait()
            life["how"] = "stopped"
            life["end"] = time.time()
            life["code"] = self.proc.returncode

    def metrics_port(self):
        try:
            with open(self.current["log"], "rb") as f:
                for line in f:
                    if b'"metrics listening"' in line:
                        return json.loads(line)["port"]
        except (OSError, ValueError, KeyError):
            pass
        return None


class Sink:
    def __init__(self, record_path, log_path):
        self.record_path = record_path
        if os.path.exists(record_path):
            os.remove(record_path)
        self.log_file = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, SINK, "--record", record_path],
                                     stdout=subprocess.PIPE, stderr=self.log_file,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise ChaosError(f"the SMTP sink did not start: {line!r} (see {log_path})")
        self.port = int(line.rsplit(":", 1)[1])
        self.stopped = False

    def command(self, text):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(text.encode() + b"\r\n")
            reply = f.readline().decode().split()
            s.sendall(b"QUIT\r\n")
        if not reply or reply[0] != "250":
            raise ChaosError(f"sink: {text}: {' '.join(reply)}")
        return reply

    def stat(self):
        _, mails, recipients, refused = self.command("XSTAT")
        return int(mails), int(recipients), int(refused)

    def crashed(self):
        return not self.stopped and self.proc.poll() is not None

    def stop(self):
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()

    def records(self):
        with open(self.record_path) as f:
            return [json.loads(line) for line in f if line.strip()]


# ----- one run -----

class Run:
    def __init__(self, args, index, seed):
        self.args = args
        self.index = index
        self.seed = seed
        self.rng = random.Random(seed)
        self.build = os.path.abspath(os.path.join(SOURCE_DIR, args.build_dir))
        self.bin = os.path.join(self.build, "bin")
        self.stack_dir = os.path.join(self.build, "chaos-stack")
        self.work = os.path.join(self.build, "chaos", f"run-{index}")
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        for name in os.listdir(self.logs):
            os.remove(os.path.join(self.logs, name))
        self.faults = []  # {"kind", "start", "end", "detail"}
        self.crashes = []  # {"service", "life", "code", "at"}
        self.crash_lock = threading.Lock()
        self.kafka_stopped_pid = None
        self.services = {}
        self.sink = None
        self.env = {}
        self.done = threading.Event()

    # -- the stack --

    def stack(self, *argv, check=True, timeout=300):
        res = subprocess.run([STACK, *argv], capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise ChaosError(f"stack.sh {' '.join(argv)}: {res.stderr.strip()[-2000:]}")
        return res.stdout

    def start_stack(self):
        for tool in ("etl_notifications", "worker_notifications", "dev_auth_server",
                     "dev_kafka_broker"):
            if not os.access(os.path.join(self.bin, tool), os.X_OK):
                raise ChaosError(f"{self.bin}/{tool} is missing: build it first")
        log(f"run {self.index}: starting the stack in {self.stack_dir}")
        self.stack("start", self.stack_dir, self.bin, "test", timeout=600)
        with open(os.path.join(self.stack_dir, "stack.env")) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    self.env[k] = v
        with open(os.path.join(self.stack_dir, "supervisord.conf")) as f:
            m = re.search(r'RABBITMQ_NODENAME="([^"]+)"', f.read())
        self.rabbit_node = m.group(1) if m else None
        self.has_redis = "LEDGER_URL" in self.env
        if self.args.ledger == "auto":
            self.ledger_url = self.env.get("LEDGER_URL", "none")
        else:
            self.ledger_url = self.args.ledger

    def program_states(self):
        out = self.stack("status", self.stack_dir, check=False)
        states = {}
        for line in out.splitlines():
            m = SUPERVISOR_STATE.match(line)
            if m:
                states[m.group(1)] = m.group(2)
        return states

    def queues(self):
        """{queue: (ready, unacknowledged)} of the stack's RabbitMQ, or None if unknown."""
        if not self.rabbit_node:
            return None
        try:
            res = subprocess.run(["rabbitmqctl", "-n", self.rabbit_node, "-q", "list_queues",
                                  "name", "messages_ready", "messages_unacknowledged"],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if res.returncode != 0:
            return None
        out = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                out[parts[0]] = (int(parts[1]), int(parts[2]))
        return out

    # -- the services --

    def crashed(self, name, life):
        with self.crash_lock:
            self.crashes.append({"service": name, "life": life["name"], "code": life["code"],
                                 "at": life["end"]})
        log(f"CRASH: {life['name']} (pid {life['pid']}) exited with {life['code']} "
            f"without being killed: see {life['log']}")

    def start_services(self):
        etl = base_env()
        etl.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.env["KAFKA_BOOTSTRAP_SERVERS"],
            "NOTIFY_EVENTS_TOPIC": TOPIC,
            "KAFKA_GROUP_ID": "chaos",
            "KAFKA_CONSUMER_CONFIG": KAFKA_CONSUMER_CONFIG,
            "RABBITMQ_URL": self.env["RABBITMQ_URL"],
            "RABBITMQ_EXCHANGE": EXCHANGE,
            "AUTH_URL": self.env["AUTH_URL"],
            "TEMPLATES_DIR": os.path.join(SOURCE_DIR, "templates"),
            "WELCOME_TTL": f"{WELCOME_TTL_S}s",
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": "0",
            "LOG_LEVEL": "info",
        })
        worker = base_env()
        worker.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.env["KAFKA_BOOTSTRAP_SERVERS"],
            "RABBITMQ_URL": self.env["RABBITMQ_URL"],
            "RABBITMQ_EXCHANGE": EXCHANGE,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.sink.port),
            "SMTP_CONCURRENCY": str(self.args.smtp_concurrency),
            "SMTP_TIMEOUT": self.args.smtp_timeout,
            "WEBHOOK_CONCURRENCY": "0",
            "LEDGER_URL": self.ledger_url,
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": "0",
            "LOG_LEVEL": "info",
        })
        self.worker_env = worker
        self.services["etl"] = Service("etl", os.path.join(self.bin, "etl_notifications"), etl,
                                       self.logs, self.crashed)
        self.services["worker"] = Service("worker",
                                          os.path.join(self.bin, "worker_notifications"), worker,
                                          self.logs, self.crashed)
        for s in self.services.values():
            s.start()
        threading.Thread(target=self.watch, daemon=True).start()

    def watch(self):
        while not self.done.wait(0.1):
            for s in list(self.services.values()):
                s.check()
            if self.sink and self.sink.crashed() and not self.sink_crash_seen:
                self.sink_crash_seen = True
                with self.crash_lock:
                    self.crashes.append({"service": "smtp sink", "life": "sink",
                                         "code": self.sink.proc.returncode, "at": time.time()})
                log("CRASH: the SMTP sink exited")

    # -- users and events --

    def create_users(self):
        self.zone, offset = daytime_zone()
        n = self.args.n
        self.expired_n = max(1, round(n * self.args.expired_share)) if self.args.expired_share else 0
        auth = self.env["AUTH_URL"]
        http_json("POST", f"{auth}/_dev/users/bulk?count={n}&prefix=chaos-&timezone={self.zone}")
        if self.expired_n:
            http_json("POST", f"{auth}/_dev/users/bulk?count={self.expired_n}"
                              f"&prefix=chaos-expired-&timezone={self.zone}")
        self.users = [f"chaos-{i}" for i in range(1, n + 1)]
        self.expired_users = [f"chaos-expired-{i}" for i in range(1, self.expired_n + 1)]
        self.event_time = {}  # user id -> event_time (Unix seconds)
        log(f"run {self.index}: {n} users and {self.expired_n} already expired ones in "
            f"{self.zone} (local time about {(datetime.datetime.utcnow().hour + offset) % 24}:00)")

    def event_line(self, uid, expired):
        t = time.time() - (WELCOME_TTL_S + 3600 if expired else 0)
        self.event_time[uid] = t
        code = "".join(self.rng.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
                       for _ in range(5))
        value = json.dumps({"id": uid, "event_type": "user_signed_up", "priority": "immediate",
                            "from_service": "auth", "event_time": iso(t),
                            "details": {"email": f"{uid}@example.com",
                                        "confirm_link": f"/s/{code}"}}, separators=(",", ":"))
        return f"{uid}+user_signed_up|{value}\n"

    def produce(self, users, expired):
        """Starts kcat producing one burst (idempotent, so a retry during an outage cannot
        write an event twice); returns the process."""
        data = "".join(self.event_line(u, False) for u in users)
        data += "".join(self.event_line(u, True) for u in expired)
        proc = subprocess.Popen(
            ["kcat", "-P", "-b", self.env["KAFKA_BOOTSTRAP_SERVERS"], "-t", TOPIC, "-K", "|",
             "-z", "lz4", "-X", "enable.idempotence=true", "-X", "linger.ms=5"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        def feed():
            try:
                proc.stdin.write(data.encode())
                proc.stdin.close()
            except OSError:
                pass  # kcat ended early: finish_burst reports its error

        proc.feeder = threading.Thread(target=feed, daemon=True)
        proc.feeder.start()
        return proc

    def finish_burst(self, proc):
        proc.feeder.join()
        err = proc.stderr.read()  # until kcat ends: it waits for every delivery report
        proc.wait()
        if proc.returncode != 0:
            raise ChaosError(f"kcat could not produce: {err.decode().strip()}")

    # -- faults --

    def fault(self, kind, action, detail="", victim=None):
        start = time.time()
        number = f"fault {len(self.faults) + 1}/{self.fault_count}"
        log(f"{number}: {FAULT_LABELS[kind]} {detail}")
        extra = action()
        end = time.time()
        if extra:
            log(f"{number} done: {extra}")
        self.faults.append({"kind": kind, "start": start, "end": end, "victim": victim,
                            "detail": (detail + (" " + extra if extra else "")).strip()})

    def progress(self, name):
        """A counter of the work a service has done from now on: mails the sink accepted (the
        worker), events the ETL finished (from its log; a new incarnation counts from 0)."""
        if name == "worker":
            base = self.sink.stat()[0]
            return lambda: self.sink.stat()[0] - base
        service = self.services["etl"]
        life, base = service.current, os.path.getsize(service.current["log"])

        def count():
            current = service.current
            with open(current["log"], "rb") as f:
                if current is life:
                    f.seek(base)
                return f.read().count(b'"event processed"')

        return count

    def kill(self, name, progress, after, limit=20.0):
        """kill -9 once the service has done `after` units of work of this burst (a random
        moment while it works), or after `limit` s if it does not get that far."""
        service = self.services[name]
        deadline = time.monotonic() + limit
        while progress() < after and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = progress() >= after
        victim = service.current["name"]

        def act():
            life = service.kill9()
            return (f"({life['name']}, pid {life['pid']}, "
                    + (f"after {after} {'mails' if name == 'worker' else 'events'} of the burst"
                       if busy else "while idle") + f"; restarted as {service.current['name']})")

        self.fault(f"{name}_kill", act, victim=victim)

    def rabbitmq_restart(self):
        self.fault("rabbitmq_restart",
                   lambda: self.stack("ctl", self.stack_dir, "restart", "rabbitmq") and None)

    def redis_restart(self):
        self.fault("redis_restart",
                   lambda: self.stack("ctl", self.stack_dir, "restart", "redis") and None)

    def kafka_outage(self):
        pid = int(self.stack("ctl", self.stack_dir, "pid", "kafka").strip())

        def act():
            os.kill(pid, signal.SIGSTOP)
            self.kafka_stopped_pid = pid
            try:
                time.sleep(self.args.outage)
            finally:
                os.kill(pid, signal.SIGCONT)
                self.kafka_stopped_pid = None

        self.fault("kafka_outage", act, f"(SIGSTOP for {self.args.outage:g} s)")

    def auth_503(self):
        def act():
            http_json("POST", f"{self.env['AUTH_URL']}/_dev/faults",
                      {"status": 503, "seconds": self.args.outage})
            time.sleep(self.args.outage)

        self.fault("auth_503", act, f"({self.args.outage:g} s)")

    def smtp_451(self):
        def act():
            self.sink.command(f"XFAULT 451 {self.args.outage}")
            time.sleep(self.args.outage)

        self.fault("smtp_451", act, f"({self.args.outage:g} s)")

    def schedule(self):
        plan = ["etl_kill"] * self.args.kills + ["worker_kill"] * self.args.kills + [
            "rabbitmq_restart", "kafka_outage", "auth_503", "smtp_451"]
        if self.has_redis:
            plan.append("redis_restart")
        self.rng.shuffle(plan)
        return plan

    def inject(self, kind):
        getattr(self, kind)()

    # -- draining --

    def consumer_lag(self):
        port = self.services["etl"].metrics_port()
        if port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as res:
                text = res.read().decode()
        except (OSError, urllib.error.URLError):
            return None
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("notify_etl_consumer_lag")]
        return sum(values) if values else None

    def mailed(self):
        wanted = {f"{u}@example.com" for u in self.users}
        got = set()
        with open(self.sink.record_path) as f:
            for line in f:
                try:
                    got.update(json.loads(line)["rcpt"])
                except ValueError:
                    pass  # a line being written
        return len(wanted & got)

    def drained(self):
        """None when everything has drained, else what is still missing."""
        mailed = self.mailed()
        if mailed < len(self.users):
            return f"{mailed}/{len(self.users)} users mailed"
        queues = self.queues()
        if queues is None:
            return "queue depths unknown (rabbitmqctl)"
        # Dead letters stay where they are: a dead posting shows as a user not mailed.
        busy = {q: v for q, v in queues.items()
                if q.startswith(EXCHANGE) and not q.endswith(".dead") and any(v)}
        if busy:
            return "queues not empty: " + ", ".join(f"{q} {r}+{u}" for q, (r, u) in busy.items())
        lag = self.consumer_lag()
        if lag is None:
            return "consumer lag unknown"
        if lag > 0:
            return f"consumer lag {lag:g}"
        return None

    def wait_drained(self):
        deadline = time.monotonic() + self.args.drain_timeout
        last_note, since = None, None
        while time.monotonic() < deadline:
            missing = self.drained()
            if missing is None:
                if since is None:
                    since = time.time()
                    log(f"drained; checking it holds for {self.args.settle:g} s")
                elif time.time() - since >= self.args.settle:
                    return since
            else:
                since = None
                if missing != last_note:
                    log(f"draining: {missing}")
                    last_note = missing
            time.sleep(1.0)
        log(f"not drained after {self.args.drain_timeout:g} s: {self.drained()}")
        return None

    # -- the whole run --

    def execute(self):
        self.sink_crash_seen = False
        self.start_stack()
        self.sink = Sink(os.path.join(self.work, "mails.jsonl"),
                         os.path.join(self.logs, "smtp_sink.log"))
        self.create_users()
        self.start_services()
        plan = self.schedule()
        self.fault_count = len(plan)
        log(f"run {self.index} (seed {self.seed}): ledger {self.ledger_url}, "
            f"SMTP_CONCURRENCY {self.args.smtp_concurrency}, faults in this order: "
            + ", ".join(FAULT_LABELS[k] for k in plan))
        bursts = len(plan) + 1
        self.started = time.time()
        for i in range(bursts):
            users = self.users[i * len(self.users) // bursts:(i + 1) * len(self.users) // bursts]
            expired = self.expired_users[i * self.expired_n // bursts:
                                         (i + 1) * self.expired_n // bursts]
            kind = plan[i] if i < len(plan) else None
            victim = {"etl_kill": "etl", "worker_kill": "worker"}.get(kind)
            progress = self.progress(victim) if victim else None
            producer = self.produce(users, expired)
            log(f"burst {i + 1}/{bursts}: {len(users)} sign-ups (+{len(expired)} expired)")
            if victim:
                # A kill at a random point of the burst's work, so it always hits work in flight.
                self.kill(victim, progress, self.rng.randint(1, max(1, len(users) // 2)))
            elif kind:
                time.sleep(self.rng.uniform(0.2, 1.5))
                self.inject(kind)
            self.finish_burst(producer)
            if i < len(plan):
                time.sleep(self.rng.uniform(1.0, 3.0))
        self.produced = time.time()
        log("every burst produced and every fault injected: waiting for the pipeline to drain")
        self.drained_at = self.wait_drained()
        self.finished = time.time()
        return self.collect()

    def cleanup(self):
        self.done.set()
        if self.kafka_stopped_pid:
            try:
                os.kill(self.kafka_stopped_pid, signal.SIGCONT)
            except OSError:
                pass
        for s in self.services.values():
            s.stop()
        if self.sink:
            self.sink.stop()

    # -- the figures --

    def dead_letters(self):
        """Dead postings in RabbitMQ and refused events in the ETL's dead-letter topic."""
        queues = self.queues() or {}
        dead = sum(r + u for q, (r, u) in queues.items() if q.endswith(".dead"))
        res = subprocess.run(["kcat", "-C", "-b", self.env["KAFKA_BOOTSTRAP_SERVERS"], "-t",
                              TOPIC + ".dlq", "-o", "beginning", "-e", "-q", "-f", "."],
                             capture_output=True, timeout=300)
        return dead, len(res.stdout)

    def topic_offsets(self):
        """{user id: [(partition, offset), ...]} of every event in the topic."""
        res = subprocess.run(["kcat", "-C", "-b", self.env["KAFKA_BOOTSTRAP_SERVERS"], "-t", TOPIC,
                              "-o", "beginning", "-e", "-q", "-f", "%k %p %o\n"],
                             capture_output=True, text=True, timeout=300)
        out = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3:
                out.setdefault(parts[0].split("+")[0], []).append((int(parts[1]), int(parts[2])))
        return out

    def service_logs(self, name):
        """(incarnation, parsed line) of every JSON log line of a service."""
        for life in self.services[name].lives:
            with open(life["log"], "rb") as f:
                for raw in f:
                    if raw.startswith(b"{"):
                        try:
                            yield life["name"], json.loads(raw)
                        except ValueError:
                            pass

    def life_at(self, name, t):
        """The incarnation of a service that was running at time t."""
        for life in self.services[name].lives:
            if life["start"] <= t and (life["end"] is None or t <= life["end"]):
                return life
        return None

    def fault_before(self, t, kinds=None):
        before = [f for f in self.faults if f["start"] <= t and (kinds is None or f["kind"] in kinds)]
        return before[-1] if before else None

    def explain(self, user, first, again, offsets, processed):
        """Why a user got a second mail, from the fault log and the services' logs: a category,
        the fault it comes from, and the evidence in words."""
        events = offsets.get(user, [])
        runs = sorted((x for e in events for x in processed.get(e, [])), key=lambda x: x[1])
        sender1 = self.life_at("worker", first["t"])
        sender2 = self.life_at("worker", again["t"])
        fault = None
        if len(events) > 1:
            cause, evidence = "producer", f"the event is {len(events)} times in Kafka"
        elif len(runs) > 1:
            # The ETL published the event's posting again: after its own death (another
            # incarnation read the event again) or within one process (fenced, rebalanced).
            (life1, _), (life2, t2) = runs[0], runs[1]
            cause = "etl_reread"
            if life1 != life2:
                fault = next((f for f in self.faults if f["victim"] == life1), None)
                fault = fault or self.fault_before(t2)
                evidence = f"{life1} processed the event, then {life2} again"
            else:
                fault = self.fault_before(t2)
                evidence = f"{life1} processed the event twice"
        elif sender1 is not None and sender1 is not sender2 and sender1["how"] == "killed":
            cause = "worker_kill"
            fault = next((f for f in self.faults if f["victim"] == sender1["name"]), None)
            evidence = f"{sender1['name']} sent it and was killed before its acknowledgement"
        else:
            cause = "resent"
            fault = self.fault_before(again["t"])
            who = sender1["name"] if sender1 else "?"
            evidence = (f"{who} sent it, then {sender2['name'] if sender2 else '?'} again; "
                        f"the ETL processed the event once")
        followed = self.fault_before(again["t"])
        return {
            "user": user,
            "posting_ids": sorted({first["posting_id"] or "", again["posting_id"] or ""}),
            "first": first["t"], "again": again["t"],
            "followed": followed["kind"] if followed else None,
            "followed_by_s": again["t"] - followed["start"] if followed else None,
            "cause": cause,
            "cause_fault": fault["kind"] if fault else None,
            "cause_fault_t": fault["start"] - self.started if fault else None,
            "evidence": evidence,
        }

    def collect(self):
        self.cleanup()
        states = self.program_states()
        for program, state in states.items():
            if state != "RUNNING":
                self.crashes.append({"service": program, "life": program, "code": state,
                                     "at": self.finished})
        offsets = self.topic_offsets()
        dead_postings, dead_events = self.dead_letters()
        processed = {}  # (partition, offset) -> [(etl incarnation, time)]
        for life, line in self.service_logs("etl"):
            if line.get("msg") == "event processed":
                processed.setdefault((line.get("partition"), line.get("offset")), []).append(
                    (life, parse_ts(line["ts"])))
        # Events an ETL processed again (a new incarnation after a kill, or the same one after
        # losing its partitions), by the fault that explains it: the ledger's work to do.
        # An event processed three times (read again after two kills) counts twice. For a kill,
        # how long before it the re-read events had been processed shows how promptly the ETL
        # commits: never longer ago than KAFKA_COMMIT_INTERVAL plus a confirm's round trip.
        rereads, oldest = {}, 0.0
        for runs in processed.values():
            runs = sorted(runs, key=lambda x: x[1])
            for (life1, t1), (life2, t2) in zip(runs, runs[1:]):
                fault = next((f for f in self.faults if f["victim"] == life1), None) \
                    if life1 != life2 else None
                if fault is not None:
                    oldest = max(oldest, fault["start"] - t1)
                fault = fault or self.fault_before(t2)
                key = fault_text(fault["kind"], fault["start"] - self.started) if fault else "none"
                rereads[key] = rereads.get(key, 0) + 1
        # ETL incarnations that never got their partitions: nothing is lost (the next one reads
        # the events), but the pipeline stood still while they lived.
        assigned = {life for life, line in self.service_logs("etl")
                    if line.get("msg") == "partitions assigned"}
        unassigned = [{"life": l["name"], "seconds": (l["end"] or self.finished) - l["start"],
                       "kafka_outage_t": next((f["start"] - self.started for f in self.faults
                                               if f["kind"] == "kafka_outage"
                                               and l["start"] <= f["start"] <= (l["end"] or 1e18)),
                                              None)}
                      for l in self.services["etl"].lives
                      if l["name"] not in assigned and (l["end"] or self.finished) - l["start"] > 15]
        # What the worker's delivery ledger did: second copies acknowledged unsent (by cause),
        # and copies that waited for another worker's claim (a killed worker's lease).
        suppressed, held, expired_dropped = {}, 0, 0
        for _, line in self.service_logs("worker"):
            msg = line.get("msg", "")
            if msg == "posting dropped" and line.get("outcome") == "expired":
                expired_dropped += 1
            elif msg.startswith("posting already sent"):
                cause = line.get("cause", "unknown")
                suppressed[cause] = suppressed.get(cause, 0) + 1
            elif msg == "posting claimed by another worker":
                held += 1

        records = self.sink.records()
        by_rcpt = {}
        for r in records:
            for a in r["rcpt"]:
                by_rcpt.setdefault(a, []).append(r)
        for mails in by_rcpt.values():
            mails.sort(key=lambda r: r["t"])

        delivered = sum(1 for u in self.users if f"{u}@example.com" in by_rcpt)
        expired_sent = []
        for u in self.users + self.expired_users:
            for r in by_rcpt.get(f"{u}@example.com", []):
                if r["t"] >= self.event_time[u] + WELCOME_TTL_S:
                    expired_sent.append({"user": u, "posting_id": r["posting_id"], "t": r["t"]})
        wanted = {f"{u}@example.com" for u in self.users + self.expired_users}
        strangers = sum(len(m) for a, m in by_rcpt.items() if a not in wanted)

        duplicates = [self.explain(u, first, again, offsets, processed)
                      for u in self.users
                      for first, again in zip(by_rcpt.get(f"{u}@example.com", []),
                                              by_rcpt.get(f"{u}@example.com", [])[1:])]
        bound = sum(1 for f in self.faults if f["kind"] == "worker_kill") * \
            self.args.smtp_concurrency
        unexplained = [d for d in duplicates if d["cause"] != "worker_kill"]
        result = {
            "index": self.index, "seed": self.seed, "n": self.args.n,
            "expired_controls": self.expired_n, "zone": self.zone,
            "ledger": "none" if self.ledger_url == "none" else "redis",
            "smtp_concurrency": self.args.smtp_concurrency, "smtp_timeout": self.args.smtp_timeout,
            "outage_s": self.args.outage,
            "started": self.started, "produced": self.produced, "drained_at": self.drained_at,
            "finished": self.finished,
            "delivered": delivered, "lost": self.args.n - delivered,
            "mails": len(records), "duplicates": len(duplicates), "duplicate_bound": bound,
            "duplicates_not_from_worker_kills": len(unexplained),
            "ledger_suppressed": suppressed, "ledger_held": held,
            "etl_rereads": rereads, "etl_reread_oldest_s": oldest, "etl_unassigned": unassigned,
            "expired_dropped": expired_dropped,
            "dead_postings": dead_postings, "dead_events": dead_events,
            "expired_sent": len(expired_sent), "mails_to_strangers": strangers,
            "events_in_topic": sum(len(v) for v in offsets.values()),
            "crashes": self.crashes,
            "faults": [dict(f, t=f["start"] - self.started) for f in self.faults],
            "duplicate_list": duplicates, "expired_list": expired_sent[:20],
            "worker_lives": [dict(l) for l in self.services["worker"].lives],
            "etl_lives": [dict(l) for l in self.services["etl"].lives],
            "drain_s": (self.drained_at - self.produced) if self.drained_at else None,
            "logs": os.path.relpath(self.logs, SOURCE_DIR),
        }
        result["target_met"] = (
            result["drained_at"] is not None and result["lost"] == 0
            and result["expired_sent"] == 0 and not result["crashes"]
            and result["duplicates"] <= bound and not unexplained
            and result["mails_to_strangers"] == 0)
        return result


CAUSE_LABELS = {
    "worker_kill": "a worker killed after the SMTP 250, before its acknowledgement",
    "etl_reread": "the ETL read the event again and published its posting again",
    "resent": "the posting sent twice though the ETL processed the event once "
              "(published again or redelivered)",
    "producer": "the event twice in Kafka (the producer)",
}


def duplicate_groups(r):
    """Duplicates grouped by cause and the fault it comes from: [(count, cause, fault, fault t,
    {most recent fault before the second mail: count}, an example)], largest first."""
    groups = {}
    for d in r["duplicate_list"]:
        key = (d["cause"], d["cause_fault"], d["cause_fault_t"])
        g = groups.setdefault(key, {"count": 0, "followed": {}, "example": d})
        g["count"] += 1
        label = FAULT_LABELS.get(d["followed"], "none")
        g["followed"][label] = g["followed"].get(label, 0) + 1
    out = [(g["count"], *key, g["followed"], g["example"]) for key, g in groups.items()]
    return sorted(out, key=lambda x: (-x[0], x[3] if x[3] is not None else -1))


def fault_text(kind, t):
    return f"{FAULT_LABELS[kind]} at +{t:.0f} s" if kind else "no fault found"


def print_result(r):
    bound = r["duplicate_bound"]
    drain = f"{r['drain_s']:.0f} s" if r["drain_s"] is not None else "not drained"
    lines = [
        f"run {r['index']} (seed {r['seed']}, ledger {r['ledger']}): "
        f"{'TARGET MET' if r['target_met'] else 'TARGET MISSED'}",
        f"  delivered        {r['delivered']} of {r['n']}",
        f"  lost             {r['lost']} (dead postings {r['dead_postings']}, "
        f"events refused by the ETL {r['dead_events']})",
        f"  duplicates       {r['duplicates']} (bound: worker kills x SMTP_CONCURRENCY = {bound}; "
        f"{r['duplicates_not_from_worker_kills']} not from a worker kill)",
        f"  expired sent     {r['expired_sent']} ({r['expired_controls']} expired sign-ups produced, "
        f"{r['expired_dropped']} dropped as expired by the worker)",
        f"  crashes          {len(r['crashes'])}"
        + "".join(f"\n    {c['life']}: exit {c['code']}" for c in r["crashes"]),
        f"  time to drain    {drain} after the last burst",
        f"  mails in all     {r['mails']}; events in Kafka {r['events_in_topic']}; "
        f"ledger: {sum(r['ledger_suppressed'].values())} second copies not sent "
        f"({', '.join(f'{k} {v}' for k, v in r['ledger_suppressed'].items()) or 'none'}), "
        f"{r['ledger_held']} waits for a held claim",
        "".join(f"  STALL            {u['life']} never got its partitions in its {u['seconds']:.0f} s"
                + (f" (Kafka unreachable from +{u['kafka_outage_t']:.0f} s)"
                   if u["kafka_outage_t"] is not None else "") + "\n"
                for u in r["etl_unassigned"]) +
        f"  ETL re-reads     events processed again {sum(r['etl_rereads'].values())} times; "
        f"after a kill none processed more than {r['etl_reread_oldest_s'] * 1000:.0f} ms before it"
        + "".join(f"\n    {v} after {k}" for k, v in r["etl_rereads"].items()),
    ]
    for count, cause, kind, t, followed, example in duplicate_groups(r):
        lines.append(f"    {count} x {CAUSE_LABELS[cause]}: {fault_text(kind, t)} "
                     f"(e.g. {example['user']}: {example['evidence']}); most recent fault before "
                     "the second mail: " + ", ".join(f"{k} {v}" for k, v in followed.items()))
    print("\n".join(lines), flush=True)


# ----- the page -----

def machine():
    def first_line(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "unknown"

    def version(pkg):
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                             text=True).stdout
        return out or "not installed"

    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
    return [
        ("CPU", f"{model}, {first_line(['nproc'])} CPUs online"),
        ("memory", f"{mem_kib / 1024 / 1024:.1f} GiB"),
        ("OS", first_line(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""])
         + f", {platform.system()} {platform.release()}"),
        ("RabbitMQ / Redis / librdkafka",
         f"{version('rabbitmq-server')} / {version('redis-server')} / {version('librdkafka-dev')}"),
        ("commit", first_line(["git", "-C", SOURCE_DIR, "describe", "--always", "--dirty"])),
    ]


def write_page(path, results, args, argv, elapsed, machine_rows):
    def when(t):
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC")

    r0 = results[0]
    met = sum(1 for r in results if r["target_met"])
    out = [
        "# Reliability under faults",
        "",
        "What the pipeline does when its parts fail while it works: every figure on this page "
        "comes from `make chaos` (`tests/chaos/chaos.py`), which wrote this page; nothing here "
        "is edited by hand. Run it again after a change that touches delivery: "
        f"`make chaos` (three runs of 10,000 sign-ups; those below took {elapsed / 60:.0f} "
        "minutes with the stacks' start and stop), `make chaos N=300 RUNS=1` to try it. "
        "It is not part of `make test` and CI does not run it.",
        "",
        "## The scenario",
        "",
        f"Each run starts its own broker stack (`dev/stack/stack.sh` in test mode: free ports, "
        f"fresh data), runs `etl_notifications` and `worker_notifications` as child processes of "
        f"the script, and an SMTP sink (`tests/chaos/smtp_sink.py`) that records every mail it "
        f"accepts (recipient, `Message-ID`, `X-Notify-Posting-Id`, time) and can answer 451. "
        f"It produces **N = {r0['n']:,} sign-ups** of users of the development Auth service who "
        f"live in a zone where it is daytime (quiet hours defer nothing), in "
        f"{len(r0['faults']) + 1} bursts, plus {r0['expired_controls']} sign-ups that expired "
        f"a day ago (a control group: none may be mailed). Right after each burst, at a random "
        f"moment while the pipeline is busy (a kill comes once the service has done a random "
        f"part, up to half, of the burst's work: events the ETL finished, mails the sink "
        f"accepted; one that waited 20 s in vain is marked idle below), one "
        f"fault, in a random order:",
        "",
        f"- the ETL `kill -9`ed and restarted a second later, {kills(r0, 'etl_kill')} times;",
        f"- the worker `kill -9`ed and restarted a second later, {kills(r0, 'worker_kill')} times;",
        "- RabbitMQ restarted (`stack.sh ctl … restart rabbitmq`);",
        f"- Kafka unreachable for {r0['outage_s']:g} s (the development broker stopped with "
        f"SIGSTOP, then SIGCONT: connections hang, as behind a dead link);",
        "- Redis, the worker's delivery ledger, restarted;" if kills(r0, "redis_restart") else
        "- (no Redis restart: the stack of this run had no Redis);",
        f"- Auth answering 503 for {r0['outage_s']:g} s (`POST /_dev/faults`);",
        f"- SMTP answering 451 at the end of every mail for {r0['outage_s']:g} s.",
        "",
        f"The worker runs with `SMTP_CONCURRENCY={r0['smtp_concurrency']}`, "
        f"`SMTP_TIMEOUT={r0['smtp_timeout']}` (the ledger's lease is twice that) and the ledger "
        f"{'on (the stack’s Redis)' if r0['ledger'] == 'redis' else 'off (`LEDGER_URL=none`)'}; "
        f"the ETL with the consumer settings of `make up` (`{KAFKA_CONSUMER_CONFIG}`). A run "
        f"ends when every user has a mail, every queue of RabbitMQ is empty and the ETL's "
        f"consumer lag is 0, and that has held for {args.settle:g} s.",
        "",
        "**Target** (issue 11): every user mailed, 0 lost, 0 expired mail sent, 0 crashes (a "
        "service that exits without being killed), and no more duplicates than worker kills × "
        "`SMTP_CONCURRENCY`, each one following a worker kill: SMTP has no idempotency, so a "
        "worker killed after the server's 250 and before its acknowledgement sends that mail "
        "again; every other fault must cause none.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in (machine_rows or machine())]
    out += [f"| date | {when(r0['started'])} |", f"| command | `{argv}` |",
            f"| duration | {elapsed / 60:.1f} min for {len(results)} run(s) |", ""]
    out += [
        "## Results",
        "",
        f"Target met in **{met} of {len(results)}** runs.",
        "",
        "| run | delivered | lost | duplicates (bound) | expired sent | crashes | time to drain "
        "| held back by the ledger | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        drain = f"{r['drain_s']:.0f} s" if r["drain_s"] is not None else "not drained"
        held = (f"{sum(r['ledger_suppressed'].values()):,}" if r["ledger"] != "none"
                else "(no ledger)")
        out.append(
            f"| {r['index']} | {r['delivered']:,} / {r['n']:,} | {r['lost']} | {r['duplicates']} "
            f"({r['duplicate_bound']}) | {r['expired_sent']} | {len(r['crashes'])} | {drain} | "
            f"{held} | {'met' if r['target_met'] else '**missed**'} |")
    out += [
        "",
        "Time to drain counts from the last burst until everything had drained. The bound is "
        "the worker's kills × `SMTP_CONCURRENCY`. *Held back by the ledger*: copies of postings "
        "already mailed that reached the worker again (an event read again by the ETL, a "
        "posting republished or redelivered) and were acknowledged without a mail, from the "
        "worker's log (`posting already sent`). Without the ledger (`LEDGER_URL=none`, "
        "`make chaos LEDGER=none`) each of them would have been a second mail.",
        "",
        "### Duplicates and the faults they followed",
        "",
        "Every second mail to a user, grouped by its cause as the logs show it (which worker "
        "incarnation sent the first mail and how it ended, which ETL incarnations processed the "
        "event, how often the event is in Kafka) and the fault that cause comes from, with the "
        "most recent fault before each second mail (seconds from the first burst).",
        "",
    ]
    rows = [(r, g) for r in results for g in duplicate_groups(r)]
    if rows:
        out += ["| run | mails | cause (from the logs) | from the fault | most recent fault "
                "before the second mail | example |", "|---|---|---|---|---|---|"]
    for r, (count, cause, kind, t, followed, example) in rows:
        after = ", ".join(f"{k} ({v})" for k, v in followed.items())
        out.append(f"| {r['index']} | {count} | {CAUSE_LABELS[cause]} | {fault_text(kind, t)} | "
                   f"{after} | {example['user']}: {example['evidence']} |")
    if not rows:
        out.append("None.")
    out += ["", "### Faults of each run, and what they caused", "",
            "Seconds from the first burst; a kill names the incarnation it ended. Events "
            "processed again are counted from the ETL's logs (`event processed`, by partition "
            "and offset), each time attributed to the kill of the incarnation that processed "
            "the event before (or, within one incarnation, to the most recent fault). A kill "
            "lands while the ETL finishes events, and the ETL commits what RabbitMQ confirmed "
            "within `KAFKA_COMMIT_INTERVAL` (250 ms): the next incarnation reads again what was "
            "confirmed in those last moments or not confirmed yet. The ledger's figures come "
            "from the worker's logs (`posting already sent` by cause, `posting claimed by "
            "another worker`).", ""]
    for r in results:
        items = "; ".join(f"+{f['t']:.0f} s {FAULT_LABELS[f['kind']]}"
                          + (f" ({f['victim']}{', idle' if 'while idle' in f['detail'] else ''})"
                             if f.get("victim") else "")
                          for f in r["faults"])
        crashes = ", ".join(f"{c['life']} (exit {c['code']})" for c in r["crashes"]) or "none"
        rereads = sum(r["etl_rereads"].values())
        reread_text = (f"the ETL processed events again {rereads:,} times ("
                       + ", ".join(f"{v:,} after {k}" for k, v in r["etl_rereads"].items())
                       + "; the oldest of those read again after a kill had been processed "
                       f"{r['etl_reread_oldest_s'] * 1000:.0f} ms before it)"
                       if rereads else "the ETL processed no event twice")
        held = r["ledger_suppressed"]
        ledger_text = (f"the ledger held back {sum(held.values()):,} copies of postings already "
                       "mailed (" + (", ".join(f"{k} {v:,}" for k, v in held.items()) or "none")
                       + f"), {r['ledger_held']} copies waited for the claim of a killed worker"
                       if r["ledger"] != "none" else "no ledger")
        stalls = "".join(
            f" {u['life']} never got its partitions in its {u['seconds']:.0f} s"
            + (f": Kafka became unreachable at +{u['kafka_outage_t']:.0f} s, during its group "
               "join, and no assignment came until it ended (nothing is lost: the next "
               "incarnation reads its events)" if u["kafka_outage_t"] is not None else "") + "."
            for u in r.get("etl_unassigned", []))
        out.append(f"- run {r['index']} (seed {r['seed']}): {items}. Crashes: {crashes}.{stalls} "
                   f"Afterwards {reread_text}; {ledger_text}; the worker dropped "
                   f"{r['expired_dropped']} postings as expired (of {r['expired_controls']} "
                   f"expired sign-ups, and copies of them read again).")
    out.append("")
    with open(path, "w") as f:
        f.write("\n".join(out))


def kills(r, kind):
    return sum(1 for f in r["faults"] if f["kind"] == kind)


def main():
    args = parse_args()
    argv = "make chaos" + (f" N={args.n}" if args.n != 10_000 else "") + \
           (f" RUNS={args.runs}" if args.runs != 3 else "")
    build = os.path.abspath(os.path.join(SOURCE_DIR, args.build_dir))
    results_path = os.path.join(build, "chaos", "results.json")
    if args.from_results:
        with open(args.from_results) as f:
            saved = json.load(f)
        write_page(os.path.join(SOURCE_DIR, args.out), saved["results"], args, saved["argv"],
                   saved.get("elapsed_s", 0.0), saved.get("machine"))
        return 0
    seed = args.seed if args.seed is not None else int(time.time())
    began = time.monotonic()
    results = []
    run = None
    try:
        for i in range(1, args.runs + 1):
            run = Run(args, i, seed + i - 1)
            try:
                results.append(run.execute())
            finally:
                run.cleanup()
                if not (args.keep_stack and i == args.runs):
                    run.stack("stop", run.stack_dir, check=False)
            print_result(results[-1])
            os.makedirs(os.path.dirname(results_path), exist_ok=True)
            elapsed = time.monotonic() - began
            with open(results_path, "w") as f:
                json.dump({"argv": argv, "elapsed_s": elapsed, "machine": machine(),
                           "results": results}, f, indent=1)
    except ChaosError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    if args.out:
        write_page(os.path.join(SOURCE_DIR, args.out), results, args, argv, elapsed, machine())
        log(f"wrote {args.out} (results in {os.path.relpath(results_path, SOURCE_DIR)})")
    met = sum(1 for r in results if r["target_met"])
    log(f"target met in {met} of {len(results)} runs")
    return 0 if met == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
