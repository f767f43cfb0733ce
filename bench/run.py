#!/usr/bin/env python3
"""The benchmarks of the pipeline (`make bench`), written to documentation/benchmarks.md.

Starts its own broker stack (dev/stack/stack.sh in test mode, in BUILD_DIR/bench-stack: its own
RabbitMQ node, the development Kafka broker, Redis for the worker's delivery ledger (append-only,
everysec, as shipped), the development Auth service; never the test stack), a fast SMTP sink
(bench_smtp_sink), runs every scenario several times and writes the medians, the ceilings and
their ratios with a description of the machine. Every figure in the
document comes from this run.

  1. ETL throughput: N user_signed_up events already in Kafka, Auth answering from the ETL's
     cache, until all postings are in RabbitMQ; ceiling: bench_etl_relay consuming the same
     events and publishing a posting the ETL made for each, with the same confirm window and
     offset commits; for reference, bench_amqp publishing as many messages alone.
  2. Mass mailing: one mailing event to an audience of N users (page_size 500): time, Auth
     calls, peak RSS of the ETL for two audience sizes.
  3. Worker throughput: N postings queued, until the sink accepted all mails; ceiling:
     bench_worker_relay consuming as many postings and sending the mail the worker sent over as
     many AMQP and SMTP connections; for reference, bench_smtp_client sending alone. Each run
     also times the worker without its delivery ledger (LEDGER_URL=none) on as many postings,
     the two in alternating order, and measures the ledger's memory per posting.
  4. CPU per event of the ETL's own work (bench_etl_cpu, Google Benchmark), and the same as
     instructions per event (bench_etl_cpu --count under perf stat or callgrind).
  5. Deferral: N postings arriving inside quiet hours, parked by the worker in a delay queue and
     released when the window ends; ceiling: bench_amqp republish (consume, publish the copy
     with windowed confirms, acknowledge after the confirm).
  6. Latency: single sign-ups on an idle stack (ETL, worker, sink), produce to SMTP 250.

usage: bench/run.py [--build-dir build-bench] [--out documentation/benchmarks.md] [--runs 3] ...
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK = os.path.join(SOURCE_DIR, "dev", "stack", "stack.sh")
PAGE_SIZE = 500
# What the bench gives the ETL's Kafka consumer (KAFKA_CONSUMER_CONFIG), and its relay the same:
# the development broker holds an empty fetch for the whole fetch.wait.max.ms.
ETL_CONSUMER_CONFIG = "fetch.wait.max.ms=50"
# The ETL's KAFKA_COMMIT_INTERVAL default, which its relay commits at as well.
ETL_COMMIT_INTERVAL_MS = 250


class BenchError(Exception):
    pass


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def median(values):
    return statistics.median(values) if values else float("nan")


def worker_default_prefetch():
    """The worker's WORKER_PREFETCH default, as its source has it (32 if it cannot be read), so
    that the relays keep the prefetch of the worker on main."""
    try:
        with open(os.path.join(SOURCE_DIR, "worker_notifications", "src", "config.hpp")) as f:
            match = re.search(r"\bprefetch\s*=\s*(\d+)\s*;", f.read())
        return int(match.group(1)) if match else 32
    except OSError:
        return 32


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--build-dir", default="build-bench", help="a Release build with bench_programs")
    p.add_argument("--out", default="documentation/benchmarks.md")
    p.add_argument("--runs", type=int, default=3, help="runs per scenario (at least 3)")
    p.add_argument("--signups", type=int, default=30_000, help="scenario 1: events")
    p.add_argument("--signup-users", type=int, default=0,
                   help="scenario 1: distinct users (0: the fixture users of dev/users.json)")
    p.add_argument("--mailing", type=int, nargs="+", default=[10_000, 100_000],
                   help="scenario 2: audience sizes; the largest is timed against its targets")
    p.add_argument("--postings", type=int, default=20_000, help="scenario 3: postings")
    p.add_argument("--smtp-connections", type=int, default=4,
                   help="scenario 3: SMTP_CONCURRENCY of the worker = connections of the ceiling")
    p.add_argument("--confirm-window", type=int, default=512,
                   help="RABBITMQ_CONFIRM_WINDOW of the ETL = window of the ceiling")
    p.add_argument("--prefetch", type=int, default=worker_default_prefetch(),
                   help="WORKER_PREFETCH of the worker (default: the worker's own default, read "
                        "from its config.hpp) = prefetch of the relays")
    p.add_argument("--deferrals", type=int, default=100_000, help="scenario 5: postings")
    p.add_argument("--latency-events", type=int, default=200, help="scenario 6: single sign-ups")
    p.add_argument("--latency-gap-ms", type=int, default=20,
                   help="scenario 6: pause after each mail before the next event")
    p.add_argument("--count-events", type=int, nargs=2, default=[1_000, 11_000],
                   help="scenario 4: the two event counts whose instructions are subtracted")
    p.add_argument("--timeout", type=int, default=300, help="seconds one run may take")
    p.add_argument("--only", default="1,2,3,4,5,6", help="scenarios to run, e.g. 1,4 (for trying)")
    p.add_argument("--from-results", metavar="JSON",
                   help="write the page from a saved run instead of running (same other options)")
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


class Processes:
    """What this driver started, so that every exit path ends exactly those."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.running = []

    def spawn(self, name, argv, env, stdout_pipe=False):
        log_path = os.path.join(self.log_dir, f"{name}.log")
        log_file = open(log_path, "wb")
        proc = subprocess.Popen(
            argv, env=env, cwd=SOURCE_DIR, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else log_file, stderr=log_file)
        proc.bench_name = name
        proc.bench_log = log_path
        log_file.close()
        self.running.append(proc)
        return proc

    def stop(self, proc, timeout=30):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{proc.bench_name} (pid {proc.pid}) did not stop in {timeout} s: killing it")
                proc.kill()
                proc.wait()
        if proc in self.running:
            self.running.remove(proc)
        return proc.returncode

    def stop_all(self):
        for proc in list(reversed(self.running)):
            self.stop(proc, timeout=10)


def base_env():
    # Only what a process needs to run: no stray service configuration from the caller's shell.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.setdefault("PATH", "/usr/bin:/bin")
    return env


def first_trouble(log_path):
    with open(log_path, "rb") as f:
        for line in f:
            if b'"event rejected"' in line or b'"intake paused"' in line:
                return line.decode(errors="replace").strip()
    return None


def cpu_seconds(pid):
    """User + system CPU time of a running process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise BenchError(f"no VmHWM for pid {pid}")


class CpuSampler:
    """Samples, every 50 ms, the machine's busy time and the CPU time of named processes, so
    that a timed window (first to last message) can be split into who used the CPU."""

    PERIOD = 0.05

    def __init__(self):
        self.pids = {}  # name -> pid
        self.samples = []  # (monotonic, machine busy s, machine total s, {name: cpu s})
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def track(self, name, pid):
        with self.lock:
            if pid is None:
                self.pids.pop(name, None)
            else:
                self.pids[name] = pid

    def loop(self):
        while not self.done.wait(self.PERIOD):
            with open("/proc/stat") as f:
                jiffies = [int(x) for x in f.readline().split()[1:]]
            idle = jiffies[3] + jiffies[4]  # idle + iowait
            total = sum(jiffies[:8])
            procs = {}
            with self.lock:
                pids = dict(self.pids)
            for name, pid in pids.items():
                try:
                    procs[name] = cpu_seconds(pid)
                except (OSError, IndexError):
                    pass
            with self.lock:
                self.samples.append((time.monotonic(), (total - idle) / self.tick,
                                     total / self.tick, procs))

    def window(self, start, end):
        """Busy share of the machine and CPU seconds per process between two instants (the
        samples just inside them)."""
        with self.lock:
            inside = [x for x in self.samples if start <= x[0] <= end]
        if len(inside) < 2:
            return None
        a, b = inside[0], inside[-1]
        share = (b[1] - a[1]) / (b[2] - a[2]) if b[2] > a[2] else 0.0
        procs = {k: b[3][k] - a[3][k] for k in b[3] if k in a[3]}
        return {"seconds": b[0] - a[0], "busy": share, "cpu": procs}

    def stop(self):
        self.done.set()
        self.thread.join()


def http(method, url, timeout=60):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as res:
        return json.loads(res.read() or b"null")


class Sink:
    """The bench SMTP sink and its control commands."""

    def __init__(self, procs, binary, sample_path, name="smtp_sink", mark=None):
        self.sample_path = sample_path
        for p in (sample_path, sample_path + ".envelope"):
            if os.path.exists(p):
                os.remove(p)
        argv = [binary, "--port", "0", "--sample", sample_path] + (["--mark", mark] if mark else [])
        self.proc = procs.spawn(name, argv, base_env(), stdout_pipe=True)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise BenchError(f"bench_smtp_sink did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def command(self, text):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            f = s.makefile("rb")
            f.readline()  # greeting
            s.sendall(text.encode() + b"\r\n")
            reply = f.readline().decode().split()
            s.sendall(b"QUIT\r\n")
        return reply

    def reset(self):
        self.command("XRESET")

    def marked_at(self, token):
        """When the mail carrying the mark's prefix + token was accepted, or None."""
        reply = self.command(f"XMARK {token}")
        return float(reply[1]) if reply and reply[0] == "250" else None

    def stat(self):
        _, count, first, last = self.command("XSTAT")
        return int(count), float(first), float(last)

    def wait(self, count, timeout, proc=None):
        deadline = time.monotonic() + timeout
        while True:
            got, first, last = self.stat()
            if got >= count:
                return got, first, last
            if proc is not None and proc.poll() is not None:
                raise BenchError(f"{proc.bench_name} ended (exit {proc.returncode}) after the sink "
                                 f"accepted {got} of {count} mails: see {proc.bench_log}")
            if time.monotonic() > deadline:
                raise BenchError(f"the sink accepted {got} of {count} mails in {timeout} s")
            time.sleep(0.05)


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(os.path.join(SOURCE_DIR, args.build_dir))
        self.bin = os.path.join(self.build, "bin")
        self.work = os.path.join(self.build, "bench-work")
        self.stack_dir = os.path.join(self.build, "bench-stack")
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.procs = Processes(self.logs)
        self.results = {}
        self.scenarios = {int(s) for s in args.only.split(",") if s.strip()}
        self.started_at = datetime.datetime.now(datetime.timezone.utc)

    # ----- the tools -----

    def tool(self, name):
        path = os.path.join(self.bin, name)
        if not os.access(path, os.X_OK):
            hint = " (needs libbenchmark-dev: scripts/install-deps.sh)" if name == "bench_etl_cpu" else ""
            raise BenchError(f"{path} is missing{hint}: cmake --build {self.build} --target bench_programs")
        return path

    def amqp(self, *args, timeout=60):
        res = subprocess.run([self.tool("bench_amqp"), self.env["RABBITMQ_URL"], *map(str, args)],
                             capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise BenchError(f"bench_amqp {' '.join(map(str, args))}: {res.stderr.strip()}")
        return res.stdout.strip()

    def watch_queue(self, queue, count, pid=None):
        argv = [self.tool("bench_amqp"), self.env["RABBITMQ_URL"], "watch", queue, str(count),
                str(self.args.timeout)]
        if pid:
            argv.append(str(pid))
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def watched(self, watcher, what, log_path=None):
        deadline = time.monotonic() + self.args.timeout + 30
        while True:
            try:
                out, err = watcher.communicate(timeout=1)
                break
            except subprocess.TimeoutExpired:
                pass
            # A refused event or a paused intake never fills the queue: say so at once.
            trouble = log_path and first_trouble(log_path)
            if trouble or time.monotonic() > deadline:
                watcher.kill()
                watcher.communicate()
                raise BenchError(f"{what}: " + (f"the service logged: {trouble}" if trouble else
                                                "the queue watch did not end"))
        if watcher.returncode != 0:
            where = f" (see {log_path})" if log_path else ""
            raise BenchError(f"{what}: {err.strip()}{where}")
        return json.loads(out)

    def produce(self, topic, lines):
        """Puts events into Kafka before a run (kcat, "key|value" a line) and checks they are all
        there: the development broker keeps only about 5 MB per partition and drops the oldest
        beyond, so the batches are lz4-compressed (as a busy producer would send them)."""
        lines = list(lines)
        data = "".join(f"{key}|{value}\n" for key, value in lines).encode()
        bootstrap = self.env["KAFKA_BOOTSTRAP_SERVERS"]
        res = subprocess.run(
            ["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "|", "-z", "lz4",
             "-X", "linger.ms=50", "-X", "batch.num.messages=10000"],
            input=data, capture_output=True, timeout=self.args.timeout)
        if res.returncode != 0:
            raise BenchError(f"kcat could not produce to {topic}: {res.stderr.decode().strip()}")
        res = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e",
                              "-q", "-f", "."], capture_output=True, timeout=self.args.timeout)
        if len(res.stdout) != len(lines):
            raise BenchError(f"{topic} holds {len(res.stdout)} of the {len(lines)} events produced")

    def etl_env(self, name, topic, exchange, auth_url):
        env = base_env()
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.env["KAFKA_BOOTSTRAP_SERVERS"],
            "NOTIFY_EVENTS_TOPIC": topic,
            "KAFKA_GROUP_ID": name,
            "KAFKA_CONSUMER_CONFIG": ETL_CONSUMER_CONFIG,
            "RABBITMQ_URL": self.env["RABBITMQ_URL"],
            "RABBITMQ_EXCHANGE": exchange,
            "RABBITMQ_CONFIRM_WINDOW": str(self.args.confirm_window),
            "AUTH_URL": auth_url,
            "AUTH_CACHE_TTL": "1h",
            "TEMPLATES_DIR": os.path.join(SOURCE_DIR, "templates"),
            # The mailing's links point to the public site (else the event is refused).
            "PUBLIC_BASE_URL": "https://example.org",
            # A mailing is bulk mail: refused without one-click unsubscribe.
            "UNSUBSCRIBE_SECRET": "bench secret, at least 16 bytes",
            "UNSUBSCRIBE_URL": "https://example.org/unsubscribe",
            "MAX_RECIPIENTS": str(max(self.args.mailing)),
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": "0",
            "LOG_LEVEL": "warn",
        })
        return env

    def run_etl_until(self, name, topic, exchange, auth_url, count):
        """Starts the ETL, waits until `count` postings are queued; returns timings and peak RSS."""
        queue = exchange + ".email"
        spawned = time.monotonic()
        etl = self.procs.spawn(name, [self.tool("etl_notifications")],
                               self.etl_env(name, topic, exchange, auth_url))
        self.cpu.track("service", etl.pid)
        seen = self.watched(self.watch_queue(queue, count, etl.pid), f"{name}: ETL", etl.bench_log)
        rss = vm_hwm_kib(etl.pid)
        self.cpu.track("service", None)
        code = self.procs.stop(etl)
        if code != 0:
            raise BenchError(f"{name}: the ETL exited with {code}: see {etl.bench_log}")
        return {"spawned": spawned, "first": seen["first"], "done": seen["done"],
                "count": seen["count"], "rss_kib": rss, "queue": queue,
                "usage": self.usage(count, seen["first"], seen["done"])}

    def usage(self, count, first, done):
        """CPU per message (µs) of the tracked processes between the first and the last message,
        and how busy the whole machine was meanwhile."""
        win = self.cpu.window(first, done)
        if win is None or done <= first:
            return None
        messages = (count - 1) / (done - first) * win["seconds"]
        out = {name: cpu / messages * 1e6 for name, cpu in win["cpu"].items()}
        out["busy"] = win["busy"]
        return out

    # ----- the stack -----

    def start_stack(self):
        log(f"starting the bench stack in {self.stack_dir}")
        subprocess.run([STACK, "start", self.stack_dir, self.bin, "test"], check=True,
                       timeout=300)
        self.env = {}
        with open(os.path.join(self.stack_dir, "stack.env")) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    self.env[k] = v

    def stack_processes(self):
        out = subprocess.run(["python3", os.path.join(SOURCE_DIR, "dev", "stack", "probe.py"),
                              "pids", self.stack_dir], capture_output=True, text=True).stdout
        for pid in out.split():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    yield int(pid), f.read().strip()
            except OSError:
                pass

    def stop_stack(self):
        subprocess.run([STACK, "stop", self.stack_dir], timeout=180)

    # ----- scenario 1 -----

    def signup_users(self):
        if self.args.signup_users > 0:
            prefix = "su-"
            http("POST", f"{self.env['AUTH_URL']}/_dev/users/bulk?count={self.args.signup_users}"
                         f"&prefix={prefix}")
            return [(f"{prefix}{i}", f"{prefix}{i}@example.com")
                    for i in range(1, self.args.signup_users + 1)]
        with open(os.path.join(SOURCE_DIR, "dev", "users.json")) as f:
            return [(u["id"], u["email"]) for u in json.load(f)]

    def signup_events(self, count, users, tag):
        for i in range(count):
            uid, email = users[i % len(users)]
            value = json.dumps({"id": uid, "event_type": "user_signed_up", "priority": "immediate",
                                "from_service": "auth",
                                "details": {"email": email, "confirm_link": f"/s/{tag}{i:07d}"}},
                               separators=(",", ":"))
            yield f"{uid}+user_signed_up", value

    def scenario_etl(self):
        n = self.args.signups
        users = self.signup_users()
        self.results["signup_users"] = len(users)
        runs = []
        for r in range(1, self.args.runs + 1):
            name = f"s1-etl-{r}"
            topic, exchange = f"bench_signup_{r}", f"bench_signup_{r}"
            self.produce(topic, self.signup_events(n, users, f"s1r{r}x"))
            http("DELETE", f"{self.env['AUTH_URL']}/_dev/stats")
            etl = self.run_etl_until(name, topic, exchange, self.env["AUTH_URL"], n)
            auth_calls = http("GET", f"{self.env['AUTH_URL']}/_dev/stats")["requests"]
            body = os.path.join(self.work, "posting.json")
            sample = json.loads(self.amqp("sample", etl["queue"], body))
            self.amqp("purge", etl["queue"])
            # The ceiling: the same number of messages of the same size into the same queue.
            started = time.monotonic()
            watcher = self.watch_queue(etl["queue"], n)
            pub = subprocess.Popen(
                [self.tool("bench_amqp"), self.env["RABBITMQ_URL"], "publish", exchange, "email",
                 str(n), str(self.args.confirm_window), body, str(sample["priority"])],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.cpu.track("service", pub.pid)
            pub_out, pub_err = pub.communicate(timeout=self.args.timeout)
            self.cpu.track("service", None)
            if pub.returncode != 0:
                watcher.kill()
                raise BenchError(f"{name}: the bare publisher failed: {pub_err.strip()}")
            seen = self.watched(watcher, f"{name}: ceiling")
            # The honest ceiling: the same events, consumed and relayed without the ETL's work.
            relay = self.run_etl_relay(name, topic, exchange, body, sample, n)
            etl_rate = (n - 1) / (etl["done"] - etl["first"])
            paced = self.paced_publish(name, exchange, etl["queue"], body, sample["priority"],
                                       etl_rate)
            self.amqp("delete", etl["queue"])
            run = {
                "etl_rate": etl_rate,
                "etl_total_s": etl["done"] - etl["spawned"],
                "etl_start_s": etl["first"] - etl["spawned"],
                "etl_rss_mib": etl["rss_kib"] / 1024,
                "etl_usage": etl["usage"],
                "auth_calls": auth_calls,
                "posting_bytes": sample["bytes"],
                "ceiling_rate": (n - 1) / (seen["done"] - seen["first"]),
                "ceiling_total_s": seen["done"] - started,
                "ceiling_own_s": json.loads(pub_out)["seconds"],
                "ceiling_usage": self.usage(n, seen["first"], seen["done"]),
                "paced_usage": paced,
                "relay_rate": relay["rate"],
                "relay_total_s": relay["total_s"],
                "relay_start_s": relay["start_s"],
                "relay_usage": relay["usage"],
            }
            run["ratio"] = run["etl_rate"] / run["relay_rate"]
            run["publisher_ratio"] = run["etl_rate"] / run["ceiling_rate"]
            log(f"{name}: ETL {run['etl_rate']:.0f} events/s, relay {run['relay_rate']:.0f} "
                f"events/s, ratio {run['ratio']:.2f}; publisher alone {run['ceiling_rate']:.0f} "
                f"messages/s; Auth calls {auth_calls}")
            runs.append(run)
        self.results["etl"] = runs

    def run_etl_relay(self, name, topic, exchange, body, sample, n):
        """bench_etl_relay on the ETL's events (a consumer group of its own): the same events,
        the same posting bytes and properties (priority, headers, a message id as long), the
        same confirm window and commits, none of the ETL's work."""
        properties = [f"--priority={sample['priority']}"]
        if sample.get("message_id"):
            properties.append(f"--message-id={sample['message_id']}")
        properties += [f"--header={k}={v}" for k, v in sample.get("headers", {}).items()]
        queue = exchange + ".email"
        self.amqp("purge", queue)
        watcher = self.watch_queue(queue, n)
        spawned = time.monotonic()
        relay = self.procs.spawn(f"{name}-relay", [
            self.tool("bench_etl_relay"), "--bootstrap", self.env["KAFKA_BOOTSTRAP_SERVERS"],
            "--topic", topic, "--group", f"{name}-relay", "--count", str(n),
            "--rabbitmq-url", self.env["RABBITMQ_URL"], "--exchange", exchange,
            "--routing-key", "email", "--window", str(self.args.confirm_window), "--body", body,
            *properties, "--consumer-config", ETL_CONSUMER_CONFIG,
            "--commit-interval-ms", str(ETL_COMMIT_INTERVAL_MS)], base_env(), stdout_pipe=True)
        self.cpu.track("service", relay.pid)
        try:
            seen = self.watched(watcher, f"{name}: ETL relay", relay.bench_log)
        finally:
            self.cpu.track("service", None)
        try:
            relay.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        code = self.procs.stop(relay)
        if code != 0:
            raise BenchError(f"{name}: bench_etl_relay exited with {code}: see {relay.bench_log}")
        self.amqp("purge", queue)
        return {"rate": (n - 1) / (seen["done"] - seen["first"]),
                "total_s": seen["done"] - spawned, "start_s": seen["first"] - spawned,
                "usage": self.usage(n, seen["first"], seen["done"])}

    def paced_publish(self, name, exchange, queue, body, priority, rate):
        """The bare publisher again, held to the service's pace: what each message costs the
        broker when messages arrive at that pace rather than in one burst."""
        count = min(self.args.signups, 20_000)
        self.amqp("purge", queue)
        watcher = self.watch_queue(queue, count)
        pub = subprocess.Popen(
            [self.tool("bench_amqp"), self.env["RABBITMQ_URL"], "publish", exchange, "email",
             str(count), str(self.args.confirm_window), body, str(priority), str(int(rate))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.cpu.track("service", pub.pid)
        _, err = pub.communicate(timeout=self.args.timeout)
        self.cpu.track("service", None)
        if pub.returncode != 0:
            watcher.kill()
            raise BenchError(f"{name}: the paced publisher failed: {err.strip()}")
        seen = self.watched(watcher, f"{name}: paced publisher")
        return self.usage(count, seen["first"], seen["done"])

    # ----- scenario 2 -----

    def start_auth(self, name, users):
        proc = self.procs.spawn(name, [self.tool("dev_auth_server"), "--port", "0"], base_env(),
                                stdout_pipe=True)
        line = proc.stdout.readline().decode()
        if "listening on " not in line:
            raise BenchError(f"{name}: dev_auth_server did not start: {line!r}")
        url = line.split("listening on ", 1)[1].split()[0]
        made = http("POST", f"{url}/_dev/users/bulk?count={users}&prefix=m-", timeout=300)
        if made["total_users"] != users:
            raise BenchError(f"{name}: the Auth service holds {made['total_users']} users, not {users}")
        return proc, url

    def mailing_event(self, auth_url, tag):
        receivers = (f"{auth_url}/api/v1/users/?is_active=true&email_notifications=true"
                     f"&page_size={PAGE_SIZE}")
        return json.dumps({
            "event_type": "mailing", "event_id": f"bench-mailing-{tag}", "from_service": "bench",
            "receivers": receivers, "template": "email/new_movies", "delivery_type": ["email"],
            "priority": "low", "expires_in": "2 days",
            "template_context": {
                "movies": [
                    {"title": "The Long Night", "url": "https://example.org/movies/the-long-night"},
                    {"title": "Blue Harbour", "url": "https://example.org/movies/blue-harbour"}],
                "unsubscribe_url": "https://example.org/unsubscribe?list=new_movies"}},
            separators=(",", ":"))

    def scenario_mailing(self):
        self.results["mailing"] = {}
        for size in sorted(self.args.mailing):
            auth, auth_url = self.start_auth(f"s2-auth-{size}", size)
            self.cpu.track("auth", auth.pid)
            runs = []
            for r in range(1, self.args.runs + 1):
                name = f"s2-mailing-{size}-{r}"
                topic = exchange = f"bench_mailing_{size}_{r}"
                self.produce(topic, [(f"mailing-{size}-{r}", self.mailing_event(auth_url, f"{size}-{r}"))])
                http("DELETE", f"{auth_url}/_dev/stats")
                etl = self.run_etl_until(name, topic, exchange, auth_url, size)
                auth_calls = http("GET", f"{auth_url}/_dev/stats")["requests"]
                self.amqp("delete", etl["queue"])
                run = {
                    "rate": (size - 1) / (etl["done"] - etl["first"]),
                    "total_s": etl["done"] - etl["spawned"],
                    "start_s": etl["first"] - etl["spawned"],
                    "rss_mb": etl["rss_kib"] * 1024 / 1e6,
                    "usage": etl["usage"],
                    "auth_calls": auth_calls,
                    "postings": etl["count"],
                }
                log(f"{name}: {run['total_s']:.1f} s, {run['rate']:.0f} postings/s, "
                    f"{auth_calls} Auth calls, peak RSS {run['rss_mb']:.1f} MB")
                runs.append(run)
            self.cpu.track("auth", None)
            self.procs.stop(auth)
            self.results["mailing"][size] = runs

    # ----- scenario 3 -----

    def worker_env(self, exchange, ledger=True):
        env = base_env()
        env.update({
            # The stack's Redis, as in production; "none" turns the ledger off.
            "LEDGER_URL": self.env["LEDGER_URL"] if ledger else "none",
            # Status events to the stack's Kafka, as a worker in production sends them.
            "KAFKA_BOOTSTRAP_SERVERS": self.env["KAFKA_BOOTSTRAP_SERVERS"],
            "RABBITMQ_URL": self.env["RABBITMQ_URL"],
            "RABBITMQ_EXCHANGE": exchange,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.sink.port),
            "SMTP_CONCURRENCY": str(self.args.smtp_connections),
            "WORKER_PREFETCH": str(self.args.prefetch),
            "WEBHOOK_CONCURRENCY": "0",
            "QUIET_HOURS": "00:00-00:00",
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": "0",
            "LOG_LEVEL": "warn",
        })
        return env

    def redis_info(self):
        """used_memory (bytes) and the number of keys of the stack's Redis."""
        port = self.env["REDIS_PORT"]
        out = {}
        for command in (["info", "memory"], ["dbsize"]):
            res = subprocess.run(["redis-cli", "-p", port, *command], capture_output=True,
                                 text=True, timeout=30)
            if res.returncode != 0:
                raise BenchError(f"redis-cli {' '.join(command)}: {res.stderr.strip()}")
            for line in res.stdout.splitlines():
                if line.startswith("used_memory:"):
                    out["used_memory"] = int(line.split(":", 1)[1])
                elif line.strip().isdigit():
                    out["keys"] = int(line)
        return out

    def run_worker(self, name, exchange, n, ledger, keep_queue=False):
        """Starts the worker on a loaded queue, waits until the sink accepted n mails; returns the
        times of the first and last mail, and the CPU use."""
        self.sink.reset()
        spawned = time.monotonic()
        worker = self.procs.spawn(name, [self.tool("worker_notifications")],
                                  self.worker_env(exchange, ledger))
        self.cpu.track("service", worker.pid)
        got, first, last = self.sink.wait(n, self.args.timeout, worker)
        self.cpu.track("service", None)
        code = self.procs.stop(worker)
        if code != 0:
            raise BenchError(f"{name}: the worker exited with {code}: see {worker.bench_log}")
        if not keep_queue:
            self.amqp("delete", exchange + ".email")
        return {"spawned": spawned, "first": first, "last": last, "got": got,
                "usage": self.usage(n, first, last)}

    def scenario_worker(self):
        n, conns = self.args.postings, self.args.smtp_connections
        users = self.signup_users()
        runs = []
        for r in range(1, self.args.runs + 1):
            name = f"s3-worker-{r}"
            timed = {}
            # With and without the delivery ledger on as many postings, in alternating order so
            # that neither always runs on a warmer (or busier) machine.
            for ledger in ((True, False) if r % 2 else (False, True)):
                label = "ledger" if ledger else "noledger"
                topic = exchange = f"bench_work_{r}_{label}"
                # The postings are the ETL's own: sign-ups rendered into the worker's queue.
                self.produce(topic, self.signup_events(n, users, f"s3r{r}{label}x"))
                self.run_etl_until(f"s3-load-{r}-{label}", topic, exchange, self.env["AUTH_URL"],
                                   n)
                if ledger:
                    # One of these postings for the relay, put back so the worker gets all n.
                    posting = os.path.join(self.work, "work-posting.json")
                    priority = json.loads(self.amqp("sample", exchange + ".email", posting))["priority"]
                    self.amqp("publish", exchange, "email", 1, 1, posting, priority)
                    relay_exchange = exchange
                before = self.redis_info()
                timed[ledger] = self.run_worker(name if ledger else f"{name}-noledger", exchange,
                                                n, ledger, keep_queue=ledger)
                after = self.redis_info()
                if ledger:
                    timed["ledger_keys"] = after["keys"] - before["keys"]
                    timed["ledger_bytes"] = (after["used_memory"] - before["used_memory"]) / n
            with_ledger, without = timed[True], timed[False]
            first, last, got = with_ledger["first"], with_ledger["last"], with_ledger["got"]
            spawned = with_ledger["spawned"]
            if not os.path.exists(self.sink.sample_path):
                raise BenchError("the sink kept no sample mail")
            # The ceiling: the same mail (captured from the worker), as many connections.
            self.sink.reset()
            started = time.monotonic()
            client = subprocess.Popen(
                [self.tool("bench_smtp_client"), "--port", str(self.sink.port), "--connections",
                 str(conns), "--count", str(n), "--message", self.sink.sample_path],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.cpu.track("service", client.pid)
            _, client_err = client.communicate(timeout=self.args.timeout)
            self.cpu.track("service", None)
            if client.returncode != 0:
                raise BenchError(f"{name}: bench_smtp_client failed: {client_err.strip()}")
            c_got, c_first, c_last = self.sink.wait(n, 10)
            relay = self.run_worker_relay(name, relay_exchange, posting, priority, n)
            # The sink alone: whole transactions pipelined, many times the mails of a run.
            self.sink.reset()
            raw_n = n * 5
            raw = subprocess.run(
                [self.tool("bench_smtp_client"), "--port", str(self.sink.port), "--connections",
                 str(conns), "--count", str(raw_n), "--message", self.sink.sample_path,
                 "--pipelined"], capture_output=True, text=True, timeout=self.args.timeout)
            if raw.returncode != 0:
                raise BenchError(f"{name}: the pipelined client failed: {raw.stderr.strip()}")
            s_got, s_first, s_last = self.sink.wait(raw_n, 10)
            run = {
                "worker_rate": (n - 1) / (last - first),
                "worker_total_s": last - spawned,
                "worker_mails": got,
                "worker_usage": with_ledger["usage"],
                "noledger_rate": (n - 1) / (without["last"] - without["first"]),
                "noledger_usage": without["usage"],
                "ledger_keys": timed["ledger_keys"],
                "ledger_bytes": timed["ledger_bytes"],
                "ceiling_usage": self.usage(n, c_first, c_last),
                "ceiling_rate": (n - 1) / (c_last - c_first),
                "ceiling_total_s": c_last - started,
                "sink_rate": (raw_n - 1) / (s_last - s_first),
                "mail_bytes": os.path.getsize(self.sink.sample_path),
                "relay_rate": relay["rate"],
                "relay_total_s": relay["total_s"],
                "relay_usage": relay["usage"],
            }
            run["ratio"] = run["worker_rate"] / run["relay_rate"]
            run["client_ratio"] = run["worker_rate"] / run["ceiling_rate"]
            run["ledger_ratio"] = run["worker_rate"] / run["noledger_rate"]
            log(f"{name}: worker {run['worker_rate']:.0f} mails/s ({run['noledger_rate']:.0f} "
                f"without the ledger, ratio {run['ledger_ratio']:.2f}), relay "
                f"{run['relay_rate']:.0f} mails/s, ratio {run['ratio']:.2f}, client alone "
                f"{run['ceiling_rate']:.0f} mails/s, sink alone "
                f"{run['sink_rate']:.0f} mails/s")
            runs.append(run)
        self.results["worker"] = runs

    def run_worker_relay(self, name, exchange, posting, priority, n):
        """bench_worker_relay on n postings in the worker's own queue: as many AMQP and SMTP
        connections, the same prefetch, the mail the sink captured from the worker."""
        queue = exchange + ".email"
        self.amqp("publish", exchange, "email", n, self.args.confirm_window, posting, priority)
        self.sink.reset()
        spawned = time.monotonic()
        relay = self.procs.spawn(f"{name}-relay", [
            self.tool("bench_worker_relay"), "--rabbitmq-url", self.env["RABBITMQ_URL"],
            "--queue", queue, "--count", str(n), "--prefetch", str(self.args.prefetch),
            "--connections", str(self.args.smtp_connections), "--port", str(self.sink.port),
            "--message", self.sink.sample_path], base_env(), stdout_pipe=True)
        self.cpu.track("service", relay.pid)
        try:
            got, first, last = self.sink.wait(n, self.args.timeout, relay)
        finally:
            self.cpu.track("service", None)
        try:
            relay.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        code = self.procs.stop(relay)
        if code != 0:
            raise BenchError(f"{name}: bench_worker_relay exited with {code}: see {relay.bench_log}")
        self.amqp("delete", queue)
        return {"rate": (n - 1) / (last - first), "total_s": last - spawned,
                "usage": self.usage(n, first, last)}

    # ----- scenario 4 -----

    def scenario_cpu(self):
        res = subprocess.run(
            [self.tool("bench_etl_cpu"), "--templates", os.path.join(SOURCE_DIR, "templates"),
             f"--benchmark_repetitions={max(3, self.args.runs)}", "--benchmark_min_time=1",
             "--benchmark_format=json"],
            capture_output=True, text=True, timeout=self.args.timeout)
        if res.returncode != 0:
            raise BenchError(f"bench_etl_cpu failed: {res.stderr.strip()}")
        report = json.loads(res.stdout)
        out = {}
        for b in report["benchmarks"]:
            if b.get("error_occurred"):
                raise BenchError(f"bench_etl_cpu {b['name']}: {b.get('error_message')}")
            if b.get("run_type") == "iteration":
                scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b["time_unit"]]
                out.setdefault(b["run_name"], []).append(b["cpu_time"] * scale)
        self.results["cpu"] = out
        self.results["cpu_context"] = report.get("context", {})
        log("CPU per event: " + ", ".join(f"{k} {median(v):.0f} ns" for k, v in out.items()))
        self.results["instructions"] = self.instructions_per_event()

    def count_instructions(self, case, n):
        """User-space instructions of `bench_etl_cpu --count CASE N`: perf stat where the
        machine counts them, else callgrind (exact, slow). Returns (instructions, tool)."""
        argv = [self.tool("bench_etl_cpu"), "--templates", os.path.join(SOURCE_DIR, "templates"),
                "--count", case, str(n)]
        res = subprocess.run(["perf", "stat", "-x,", "-e", "instructions:u", *argv],
                             capture_output=True, text=True, timeout=self.args.timeout)
        if res.returncode == 0:
            for line in res.stderr.splitlines():
                fields = line.split(",")
                if len(fields) > 2 and fields[2].startswith("instructions") and fields[0].isdigit():
                    return int(fields[0]), "perf stat -e instructions:u"
        elif "--count" in res.stderr:
            raise BenchError(f"bench_etl_cpu --count {case} {n}: {res.stderr.strip()}")
        res = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                              *argv], capture_output=True, text=True, timeout=self.args.timeout * 3)
        if res.returncode != 0:
            raise BenchError(f"callgrind bench_etl_cpu --count {case} {n}: "
                             f"{res.stderr.strip()[-500:]}")
        for line in res.stderr.splitlines():
            if "Collected :" in line:
                return int(line.split("Collected :", 1)[1].split()[0]), "valgrind --tool=callgrind"
        raise BenchError("callgrind printed no instruction count")

    def instructions_per_event(self):
        """Instructions per event: the difference between two counts of events, divided by the
        difference in events (start-up and template loading cancel out)."""
        small, big = sorted(self.args.count_events)
        probe = subprocess.run([self.tool("bench_etl_cpu"), "--templates",
                                os.path.join(SOURCE_DIR, "templates"), "--count", "signup", "1"],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode != 0 or not probe.stdout.strip().startswith("{"):
            why = (probe.stderr.strip().splitlines() or ["no JSON line"])[-1]
            log(f"instructions per event: not available (bench_etl_cpu --count: {why})")
            return {"available": False, "why": f"`bench_etl_cpu --count` did not run: {why}"}
        out = {"available": True, "counts": [small, big]}
        for case in ("signup", "mailing"):
            try:
                a, tool = self.count_instructions(case, small)
                b, _ = self.count_instructions(case, big)
            except (OSError, BenchError) as e:
                # Neither perf's counters nor valgrind here (valgrind: apt-get install valgrind).
                log(f"instructions per event: not available ({e})")
                return {"available": False, "why": f"no instruction counter: {e}"}
            out[case] = (b - a) / (big - small)
            out["tool"] = tool
            log(f"instructions per {case} event: {out[case]:,.0f} ({tool})")
        return out

    # ----- scenario 5 -----

    def deferral_posting(self, topic, exchange, path):
        """A posting the ETL made for a sign-up, turned into one that respects quiet hours for a
        recipient in UTC; returns (priority, byte offset of the 12 characters of its id that
        bench_amqp replaces in each copy, so that every copy is another posting)."""
        uid, email = self.signup_users()[0]
        self.produce(topic, self.signup_events(1, [(uid, email)], f"{topic}x"))
        self.run_etl_until(f"{topic}-etl", topic, exchange, self.env["AUTH_URL"], 1)
        priority = json.loads(self.amqp("sample", exchange + ".email", path))["priority"]
        with open(path, "rb") as f:
            posting = json.loads(f.read())
        posting["quiet_hours"] = "respect"  # a sign-up's own posting bypasses them
        posting["recipient"]["timezone"] = "UTC"
        posting["posting_id"] = posting["posting_id"][:-12] + "0" * 12
        data = json.dumps(posting, ensure_ascii=False, separators=(",", ":")).encode()
        id_at = data.index(posting["posting_id"].encode()) + len(posting["posting_id"]) - 12
        with open(path, "wb") as f:
            f.write(data)
        return priority, id_at

    def deferral_env(self, exchange, quiet_end, tier_s):
        """The worker with quiet hours from a while ago until quiet_end (UTC, whole seconds), no
        spread, and one delay tier."""
        env = self.worker_env(exchange)
        start = quiet_end - datetime.timedelta(seconds=tier_s + 120)
        env.update({"QUIET_HOURS": f"{start:%H:%M:%S}-{quiet_end:%H:%M:%S}",
                    "QUIET_HOURS_SPREAD": "0", "DEFAULT_TIMEZONE": "UTC",
                    "DELAY_TIERS": format_seconds(tier_s)})
        return env

    def declare_delay_queue(self, name, exchange, tier_s):
        """A worker started on an empty work queue declares its topology (the delay queue of
        tier_s among it) and is stopped again."""
        queue = f"{exchange}.email.delay.{format_seconds(tier_s)}"
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        worker = self.procs.spawn(name, [self.tool("worker_notifications")],
                                  self.deferral_env(exchange, now, tier_s))
        deadline = time.monotonic() + 30
        while self.amqp("exists", queue) != "yes":
            if time.monotonic() > deadline or worker.poll() is not None:
                self.procs.stop(worker)
                raise BenchError(f"{name}: the worker did not declare {queue}: see {worker.bench_log}")
            time.sleep(0.05)
        self.procs.stop(worker)
        return queue

    def scenario_deferral(self):
        n, conns = self.args.deferrals, self.args.smtp_connections
        runs = []
        for r in range(1, self.args.runs + 1):
            name = f"s5-deferral-{r}"
            topic = exchange = f"bench_defer_{r}"
            queue = exchange + ".email"
            posting = os.path.join(self.work, "deferral-posting.json")
            priority, id_at = self.deferral_posting(topic, exchange, posting)
            load = ["publish", exchange, "email", n, self.args.confirm_window, posting, priority, 0,
                    f"id-at={id_at}"]

            # The ceiling: a bare republisher moves the postings into a delay queue (one as long
            # as a run may take, so none comes back meanwhile).
            ceiling_queue = self.declare_delay_queue(f"{name}-declare", exchange, self.args.timeout)
            self.amqp(*load, timeout=self.args.timeout)
            watcher = self.watch_queue(ceiling_queue, n)
            rep = subprocess.Popen(
                [self.tool("bench_amqp"), self.env["RABBITMQ_URL"], "republish", queue, "",
                 ceiling_queue, str(n), str(self.args.confirm_window), str(self.args.prefetch),
                 str(conns)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.cpu.track("service", rep.pid)
            _, rep_err = rep.communicate(timeout=self.args.timeout)
            self.cpu.track("service", None)
            if rep.returncode != 0:
                watcher.kill()
                raise BenchError(f"{name}: the bare republisher failed: {rep_err.strip()}")
            seen = self.watched(watcher, f"{name}: republisher")
            ceiling_rate = (n - 1) / (seen["done"] - seen["first"])
            ceiling_usage = self.usage(n, seen["first"], seen["done"])
            self.amqp("delete", ceiling_queue)

            # The worker: quiet hours end `quiet` seconds after its start, long enough to park
            # every posting at half the ceiling's pace (at least 30 s), and its one delay tier is
            # as long, so every copy comes back after the end and is sent then. A worker slower
            # than that has parked only part of them by the end: its rate is then what it parked
            # from its start to the end (the page says so), and the rest is sent at once.
            quiet = max(30, -(-n // max(1, int(ceiling_rate * 0.5))))
            if quiet > self.args.timeout:
                raise BenchError(f"{name}: the ceiling ({ceiling_rate:.0f}/s) is too slow for "
                                 f"{n:,} postings in {self.args.timeout} s")
            self.amqp(*load, timeout=self.args.timeout)
            delay_queue = f"{queue}.delay.{format_seconds(quiet)}"
            self.sink.reset()
            spawned = time.monotonic()
            quiet_end = (datetime.datetime.now(datetime.timezone.utc) +
                         datetime.timedelta(seconds=quiet)).replace(microsecond=0)
            end_mono = spawned + (quiet_end - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
            watcher = subprocess.Popen(
                [self.tool("bench_amqp"), self.env["RABBITMQ_URL"], "watch", delay_queue, str(n),
                 str(max(1, int(end_mono - time.monotonic())))],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            worker = self.procs.spawn(name, [self.tool("worker_notifications")],
                                      self.deferral_env(exchange, quiet_end, quiet))
            self.cpu.track("service", worker.pid)
            out, err = watcher.communicate(timeout=quiet + 30)
            if watcher.returncode == 0:
                parked = json.loads(out)
                complete = True
            else:
                # "QUEUE holds X of N messages after T s": what was parked by the end.
                words = err.split()
                held = int(words[words.index("holds") + 1]) if "holds" in words else 0
                if held < 2:
                    raise BenchError(f"{name}: the worker parked nothing: {err.strip()} (see "
                                     f"{worker.bench_log})")
                parked = {"first": spawned, "done": time.monotonic(), "count": held}
                complete = False
            park_usage = self.usage(parked["count"], parked["first"], parked["done"])
            early, _, _ = self.sink.stat()
            got, first, last = self.sink.wait(n, quiet + self.args.timeout, worker)
            release_usage = self.usage(n, first, last)
            self.cpu.track("service", None)
            code = self.procs.stop(worker)
            if code != 0:
                raise BenchError(f"{name}: the worker exited with {code}: see {worker.bench_log}")
            self.amqp("delete", queue)
            self.amqp("delete", delay_queue)
            run = {
                "park_rate": (parked["count"] - 1) / (parked["done"] - parked["first"]),
                "parked_by_end": parked["count"],
                "complete": complete,
                "park_usage": park_usage,
                "ceiling_rate": ceiling_rate,
                "ceiling_usage": ceiling_usage,
                "quiet_s": quiet,
                "sent_early": early,
                "release_rate": (n - 1) / (last - first),
                "release_usage": release_usage,
                "end_to_first_s": first - end_mono,
                "end_to_last_s": last - end_mono,
                "mails": got,
            }
            run["ratio"] = run["park_rate"] / ceiling_rate
            log(f"{name}: parked {run['park_rate']:.0f}/s, republisher {ceiling_rate:.0f}/s, "
                f"ratio {run['ratio']:.2f}; released {run['release_rate']:.0f} mails/s, "
                f"quiet end → last mail {run['end_to_last_s']:.1f} s")
            runs.append(run)
        self.results["deferral"] = runs

    # ----- scenario 6 -----

    def scenario_latency(self):
        """Single sign-ups on an idle stack: each produced alone, the next once its mail was
        accepted and a pause has passed; produce → SMTP 250, matched by the confirm link."""
        m = self.args.latency_events
        topic = exchange = "bench_latency"
        mark = "benchlat"
        sink = Sink(self.procs, self.tool("bench_smtp_sink"), os.path.join(self.work, "latency.eml"),
                    name="latency_sink", mark=mark)
        saved_sink, self.sink = self.sink, sink
        users = self.signup_users()

        def event(i):
            uid, email = users[i % len(users)]
            token = f"{i:07d}"
            value = json.dumps({"id": uid, "event_type": "user_signed_up", "priority": "immediate",
                                "from_service": "auth",
                                "details": {"email": email, "confirm_link": f"/s/{mark}{token}"}},
                               separators=(",", ":"))
            return token, f"{uid}+user_signed_up", value

        try:
            # Warm-up, before the services start (the ETL then finds its topic at once): the
            # group join, the connections and each user's first Auth lookup.
            warm = [event(1_000_000 + i) for i in range(len(users))]
            self.produce(topic, [(key, value) for _, key, value in warm])
            etl = self.procs.spawn("s6-etl", [self.tool("etl_notifications")],
                                   self.etl_env("s6-etl", topic, exchange, self.env["AUTH_URL"]))
            worker = self.procs.spawn("s6-worker", [self.tool("worker_notifications")],
                                      self.worker_env(exchange))
            producer = subprocess.Popen(
                [self.tool("bench_produce"), "--bootstrap", self.env["KAFKA_BOOTSTRAP_SERVERS"],
                 "--topic", topic], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
            if producer.stdout.readline().strip() != "ready":
                raise BenchError(f"bench_produce did not start: {producer.stderr.read().strip()}")

            def mailed(token, since, timeout):
                deadline = since + timeout
                while time.monotonic() < deadline:
                    at = sink.marked_at(token)
                    if at is not None:
                        return at - since
                    for proc in (etl, worker):
                        if proc.poll() is not None:
                            raise BenchError(f"{proc.bench_name} ended: see {proc.bench_log}")
                    time.sleep(0.001)
                return None

            def one(i, timeout):
                token, key, value = event(i)
                producer.stdin.write(f"{key}|{value}\n")
                producer.stdin.flush()
                line = producer.stdout.readline()
                if not line:
                    raise BenchError(f"bench_produce: {producer.stderr.read().strip()}")
                return mailed(token, json.loads(line)["produced"], timeout)

            started = time.monotonic()
            for token, _, _ in warm:
                if mailed(token, started, 60) is None:
                    raise BenchError("a warm-up sign-up was not mailed within 60 s: see "
                                     f"{etl.bench_log} and {worker.bench_log}")
            if one(1_000_100, 30) is None:
                raise BenchError("a sign-up from bench_produce was not mailed within 30 s")
            latencies, missing = [], 0
            for i in range(m):
                time.sleep(self.args.latency_gap_ms / 1000)
                lat = one(i, 10)
                if lat is None:
                    missing += 1
                else:
                    latencies.append(lat * 1000)
            producer.stdin.close()
            producer.wait(10)
            for proc in (worker, etl):
                self.procs.stop(proc)
        finally:
            self.sink = saved_sink
            self.procs.stop(sink.proc)
        if not latencies:
            raise BenchError(f"none of {m} single sign-ups was mailed within 10 s")
        latencies.sort()

        def pct(p):
            return latencies[min(len(latencies) - 1, int(round(p / 100 * (len(latencies) - 1))))]

        res = {"events": m, "mailed": len(latencies), "missing": missing,
               "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": latencies[-1],
               "min_ms": latencies[0], "gap_ms": self.args.latency_gap_ms}
        log(f"latency of {len(latencies)} single sign-ups: p50 {res['p50_ms']:.1f} ms, "
            f"p99 {res['p99_ms']:.1f} ms, max {res['max_ms']:.1f} ms, {missing} not mailed in 10 s")
        self.results["latency"] = res

    # ----- all of it -----

    def run(self):
        needed = ["etl_notifications", "worker_notifications", "dev_auth_server", "dev_kafka_broker",
                  "bench_amqp", "bench_smtp_sink", "bench_smtp_client", "bench_etl_relay",
                  "bench_worker_relay", "bench_produce"]
        for name in needed + (["bench_etl_cpu"] if 4 in self.scenarios else []):
            self.tool(name)
        started = time.monotonic()
        self.cpu = CpuSampler()
        self.results["failed"] = {}

        def attempt(number, scenario):
            # A scenario that fails is named on the page; the others still run.
            try:
                scenario()
            except BenchError as e:
                log(f"scenario {number} FAILED: {e}")
                self.results["failed"][str(number)] = str(e)
            except subprocess.TimeoutExpired as e:
                log(f"scenario {number} FAILED: timed out: {e}")
                self.results["failed"][str(number)] = f"timed out: {e}"
            self.cpu.track("service", None)

        try:
            if 4 in self.scenarios:
                attempt(4, self.scenario_cpu)  # first: no broker competes for the CPU yet
            if self.scenarios & {1, 2, 3, 5, 6}:
                self.start_stack()
                self.sink = Sink(self.procs, self.tool("bench_smtp_sink"),
                                 os.path.join(self.work, "sample.eml"))
                self.cpu.track("sink", self.sink.proc.pid)
                for pid, comm in self.stack_processes():
                    if comm == "beam.smp":
                        self.cpu.track("rabbitmq", pid)
                    elif comm == "dev_kafka_broke":  # comm keeps 15 characters
                        self.cpu.track("kafka", pid)
                    elif comm == "redis-server":
                        self.cpu.track("redis", pid)
                for number, scenario in ((1, self.scenario_etl), (2, self.scenario_mailing),
                                         (3, self.scenario_worker), (5, self.scenario_deferral),
                                         (6, self.scenario_latency)):
                    if number in self.scenarios:
                        attempt(number, scenario)
        finally:
            self.cpu.stop()
            self.procs.stop_all()
            if self.scenarios & {1, 2, 3, 5, 6}:
                self.stop_stack()
        self.results["elapsed_s"] = time.monotonic() - started


def format_seconds(seconds):
    """A duration as the worker names its delay queues (notify::format_duration)."""
    for size, suffix in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if seconds % size == 0:
            return f"{seconds // size}{suffix}"
    raise ValueError(seconds)


def machine():
    def first_line(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "unknown"

    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(next(l for l in f if l.startswith("MemTotal")).split()[1])

    def version(pkg):
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                             text=True).stdout
        return out or "unknown"

    return [
        ("CPU", f"{model}, {first_line(['nproc'])} CPUs online (nproc)"),
        ("memory", f"{mem_kib / 1024 / 1024:.1f} GiB"),
        ("kernel", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("OS", first_line(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""])),
        ("compiler", first_line(["c++", "--version"])),
        ("RabbitMQ", version("rabbitmq-server")),
        ("Redis", version("redis-server")),
        ("librdkafka / rabbitmq-c / libcurl",
         f"{version('librdkafka-dev')} / {version('librabbitmq-dev')} / {version('libcurl4-openssl-dev')}"),
        ("load average at the end", " ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]


def usage_text(usage, service):
    """"ETL 131, RabbitMQ 60, Kafka 2, sink 0; machine 97 % busy" from a usage dict."""
    if not usage:
        return "n/a"
    names = [("service", service), ("rabbitmq", "RabbitMQ"), ("kafka", "Kafka"), ("redis", "Redis"),
             ("auth", "Auth"), ("sink", "sink")]
    parts = [f"{label} {usage[key]:.0f}" for key, label in names if key in usage]
    return ", ".join(parts) + f"; machine {usage['busy'] * 100:.0f} % busy"


def median_usage(usages):
    usages = [u for u in usages if u]
    keys = set().union(*usages) if usages else set()
    return {k: median([u[k] for u in usages if k in u]) for k in keys}


def total_cpu(usage):
    """CPU per message of all tracked processes (µs)."""
    return sum(v for k, v in usage.items() if k != "busy")


def fmt(x, digits=0):
    return f"{x:,.{digits}f}"


def write_report(bench, path, argv):
    a, res = bench.args, bench.results
    rows, notes, details, targets = [], [], [], []

    def verdict(ok):
        return "yes" if ok else "**no**"

    def target(what, measured, goal, ok, note=None):
        """A line of the targets table (issue 12 and 11); a missed one gets its reason below."""
        targets.append((what, measured, goal, verdict(ok)))
        if not ok and note is not None:
            notes.append(note)

    if "etl" in res:
        runs = res["etl"]
        etl = median([r["etl_rate"] for r in runs])
        relay = median([r["relay_rate"] for r in runs])
        publisher = median([r["ceiling_rate"] for r in runs])
        ratio = median([r["ratio"] for r in runs])
        rows.append((f"1. ETL: {a.signups:,} sign-ups → postings confirmed (events/s); ceiling: the "
                     "ETL relay", len(runs), fmt(etl), fmt(relay), f"{ratio:.2f}", "≥ 0.90",
                     verdict(ratio >= 0.9)))
        eu = median_usage([r["etl_usage"] for r in runs])
        ru = median_usage([r["relay_usage"] for r in runs])
        if eu and ru:
            rows.append(("1. CPU per event, all processes (µs; ratio = relay / ETL)", len(runs),
                         fmt(total_cpu(eu)), fmt(total_cpu(ru)),
                         f"{total_cpu(ru) / total_cpu(eu):.2f}", "", ""))
        rows.append(("1. For reference: the publisher alone (bench_amqp publish, messages/s; ratio "
                     "= ETL / publisher)", len(runs), fmt(etl), fmt(publisher),
                     f"{median([r['publisher_ratio'] for r in runs]):.2f}", "", ""))
        rows.append(("1. Time from start until all confirmed (s; ETL, relay)", len(runs),
                     fmt(median([r["etl_total_s"] for r in runs]), 1),
                     fmt(median([r["relay_total_s"] for r in runs]), 1), "", "", ""))
        target("ETL throughput / its relay", f"{ratio:.2f}", "≥ 0.90",
               ratio >= 0.9, ("ETL throughput ratio", ratio, etl, relay))
        details.append("### 1. ETL throughput\n")
        details.append(
            f"{a.signups:,} `user_signed_up` events for {res['signup_users']} users "
            + ("(the fixture users of `dev/users.json`)" if a.signup_users == 0 else
               "(bulk users of the development Auth service)")
            + ", so after the first lookup of each user the ETL's Auth cache (`AUTH_CACHE_TTL=1h`) "
            f"answers; `RABBITMQ_CONFIRM_WINDOW={a.confirm_window}`, "
            f"`KAFKA_CONSUMER_CONFIG={ETL_CONSUMER_CONFIG}`.\n")
        details.append(
            "The ceiling (`bench_etl_relay`) consumes the same events from Kafka with librdkafka in a "
            "consumer group of its own, with the ETL's consumer settings (offsets stored only past "
            f"confirmed publishes, committed asynchronously and coalesced every "
            f"{ETL_COMMIT_INTERVAL_MS} ms, `{ETL_CONSUMER_CONFIG}`), and publishes for each the bytes "
            "of a posting the ETL made, with its properties (priority, headers, a message id as long, "
            "unique per message; persistent, mandatory), with rabbitmq-c into the same exchange "
            "and queue with the same confirm window; no decoding, no rendering. For reference, "
            "`bench_amqp publish` publishes as many such messages without consuming anything. Both "
            "are timed like the ETL, from the first to the last message in the queue; the ratio is "
            "the median of the runs' ratios.\n")
        details.append("| run | ETL events/s | relay events/s | ratio | publisher alone msgs/s | ETL start → first posting (s) | relay start → first (s) | ETL start → all (s) | CPU per event, ETL run (µs) | CPU per event, relay run (µs) | CPU per message, publisher alone (µs) | CPU per message, publisher at the ETL's pace (µs) | Auth calls | posting bytes | ETL peak RSS (MiB) |")
        details.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(runs, 1):
            details.append(
                f"| {i} | {fmt(r['etl_rate'])} | {fmt(r['relay_rate'])} | {r['ratio']:.2f} | "
                f"{fmt(r['ceiling_rate'])} | {r['etl_start_s']:.2f} | {r['relay_start_s']:.2f} | "
                f"{r['etl_total_s']:.2f} | {usage_text(r['etl_usage'], 'ETL')} | "
                f"{usage_text(r['relay_usage'], 'relay')} | {usage_text(r['ceiling_usage'], 'publisher')} | "
                f"{usage_text(r['paced_usage'], 'publisher')} | {r['auth_calls']} | "
                f"{r['posting_bytes']:,} | {r['etl_rss_mib']:.1f} |")
        details.append("")
        details.append("Peak RSS has no target here: with all events waiting, the Kafka consumer "
                       "prefetches as many as librdkafka's queue limits allow.\n")

    if "mailing" in res:
        sizes = sorted(res["mailing"])
        big, small = sizes[-1], sizes[0]
        bruns, sruns = res["mailing"][big], res["mailing"][small]
        calls = [r["auth_calls"] for r in bruns]
        expected = -(-big // PAGE_SIZE)
        rss_big, rss_small = median([r["rss_mb"] for r in bruns]), median([r["rss_mb"] for r in sruns])
        rows.append((f"2. Mailing to {big:,} users: time from start until all confirmed (s)", len(bruns),
                     fmt(median([r["total_s"] for r in bruns]), 1), "", "", "", ""))
        rows.append((f"2. Mailing to {big:,} users: postings/s", len(bruns),
                     fmt(median([r["rate"] for r in bruns])), "", "", "", ""))
        calls_ok = all(c == expected for c in calls)
        rows.append((f"2. Mailing to {big:,} users: Auth calls (page_size {PAGE_SIZE})", len(bruns),
                     ", ".join(str(c) for c in calls), "", "", f"exactly {expected}",
                     verdict(calls_ok)))
        for size in sizes:
            rr = res["mailing"][size]
            rss = median([r["rss_mb"] for r in rr])
            rows.append((f"2. ETL peak RSS, mailing to {size:,} users (MB)", len(rr), fmt(rss, 1), "",
                         "", "≤ 32", verdict(rss <= 32)))
        growth = rss_big / rss_small
        flat = growth <= 1.10
        rows.append((f"2. Peak RSS {big:,} / {small:,} users", "", f"{growth:.2f}", "", "",
                     "flat (≤ 1.10)", verdict(flat)))
        target(f"Mailing to {big:,} users: Auth calls", ", ".join(str(c) for c in calls),
               f"exactly {expected}", calls_ok, ("Auth calls", calls, expected, None))
        target(f"Mailing to {big:,} users: ETL peak RSS (MB)", fmt(rss_big, 1), "≤ 32",
               rss_big <= 32, ("peak RSS", rss_big, rss_small, None))
        target(f"Peak RSS {big:,} / {small:,} users", f"{growth:.2f}", "≤ 1.10", flat,
               ("RSS growth", growth, rss_big, rss_small))
        details.append("### 2. Mass mailing\n")
        details.append(f"One `mailing` event (`email/new_movies`) whose `receivers` is the Auth listing "
                       f"with `page_size={PAGE_SIZE}`, answered by a development Auth service of its own "
                       "holding exactly the audience (bulk users). Auth calls are counted by the Auth "
                       "service (`GET /_dev/stats`: requests to `/api/`). Peak RSS is the ETL's `VmHWM` "
                       "once every posting is queued, in MB (10^6 bytes).\n")
        details.append("| audience | run | start → all (s) | start → first posting (s) | postings/s | CPU per posting (µs) | Auth calls | peak RSS (MB) |")
        details.append("|---|---|---|---|---|---|---|---|")
        for size in sizes:
            for i, r in enumerate(res["mailing"][size], 1):
                details.append(f"| {size:,} | {i} | {r['total_s']:.2f} | {r['start_s']:.2f} | {fmt(r['rate'])} | "
                               f"{usage_text(r['usage'], 'ETL')} | {r['auth_calls']} | {r['rss_mb']:.1f} |")
        details.append("")

    if "worker" in res:
        runs = res["worker"]
        worker = median([r["worker_rate"] for r in runs])
        relay = median([r["relay_rate"] for r in runs])
        client = median([r["ceiling_rate"] for r in runs])
        sink = median([r["sink_rate"] for r in runs])
        ratio = median([r["ratio"] for r in runs])
        rows.append((f"3. Worker with the ledger: {a.postings:,} postings → mails accepted (mails/s, "
                     f"{a.smtp_connections} connections); ceiling: the worker relay", len(runs),
                     fmt(worker), fmt(relay), f"{ratio:.2f}", "≥ 0.90", verdict(ratio >= 0.9)))
        wu = median_usage([r["worker_usage"] for r in runs])
        ru = median_usage([r["relay_usage"] for r in runs])
        if wu and ru:
            rows.append(("3. CPU per mail, all processes (µs; ratio = relay / worker)", len(runs),
                         fmt(total_cpu(wu)), fmt(total_cpu(ru)),
                         f"{total_cpu(ru) / total_cpu(wu):.2f}", "", ""))
        target("Worker throughput (ledger on) / its relay", f"{ratio:.2f}", "≥ 0.90", ratio >= 0.9,
               ("worker ratio", ratio, worker, relay))
        without = median([r["noledger_rate"] for r in runs])
        ledger_ratio = median([r["ledger_ratio"] for r in runs])
        rows.append(("3. Worker with the delivery ledger / without it (mails/s; ratio = with / "
                     "without)", len(runs), fmt(worker), fmt(without), f"{ledger_ratio:.2f}",
                     "≥ 0.90", verdict(ledger_ratio >= 0.9)))
        target("Worker with the ledger / without it (issue 11)", f"{ledger_ratio:.2f}", "≥ 0.90",
               ledger_ratio >= 0.9, ("ledger ratio", ledger_ratio, worker, without))
        per_posting = median([r["ledger_bytes"] for r in runs])
        rows.append(("3. Ledger memory in Redis per posting (bytes)", len(runs),
                     fmt(per_posting), "", "", "", ""))
        rows.append(("3. Ledger memory for 100,000 live postings (MiB, from the above)",
                     len(runs), fmt(per_posting * 100_000 / 2**20, 1), "", "", "", ""))
        rows.append(("3. For reference: the SMTP client alone (bench_smtp_client, mails/s; ratio = "
                     "worker / client)", len(runs), fmt(worker), fmt(client),
                     f"{median([r['client_ratio'] for r in runs]):.2f}", "", ""))
        rows.append(("3. Time from start until all accepted (s; worker, relay)", len(runs),
                     fmt(median([r["worker_total_s"] for r in runs]), 1),
                     fmt(median([r["relay_total_s"] for r in runs]), 1), "", "", ""))
        rows.append(("3. The sink alone, pipelined (mails/s)", len(runs), fmt(sink), "", "",
                     "faster than all", verdict(sink > max(worker, relay, client))))
        if sink <= max(worker, relay, client):
            notes.append(("sink", sink, worker, relay))
        details.append("### 3. Worker throughput\n")
        details.append(
            "The postings are the ETL's own (sign-ups for the fixture users, rendered into the "
            f"worker's queue before the worker starts). The worker runs with `SMTP_CONCURRENCY="
            f"{a.smtp_connections}`, `WORKER_PREFETCH` at its default ({a.prefetch}), quiet hours "
            "off; the sink (`bench_smtp_sink`) answers every command at once and counts.\n")
        details.append(
            "The worker runs with its delivery ledger (`LEDGER_URL`: the stack's Redis, append-only "
            "file with `appendfsync everysec`, as shipped) and, in the same run, without it "
            f"(`LEDGER_URL=none`) on another {a.postings:,} postings, the two in alternating order. "
            "The ledger's memory is the growth of Redis's `used_memory` over the run with it, per "
            "posting; its entries expire after their postings, so it holds the live postings only.\n")
        details.append(
            f"The ceiling (`bench_worker_relay`): {a.smtp_connections} threads, each with its own "
            f"AMQP connection (prefetch {a.prefetch}) and its own libcurl SMTP connection, as the "
            f"worker's sender threads, consume {a.postings:,} copies of one of those postings from "
            "the worker's own queue and send for each the mail the sink captured from the worker, "
            "acknowledging several deliveries at once (multiple); no decoding, no policy, no MIME "
            "building, no ledger. For reference, `bench_smtp_client` sends as many mails over as "
            "many libcurl connections without consuming anything; the sink alone: raw sockets "
            f"writing batches of whole transactions ({a.postings * 5:,} mails) without waiting for "
            "replies.\n")
        details.append("| run | worker mails/s | relay mails/s | ratio | without the ledger mails/s | ledger ratio | client alone mails/s | worker start → all (s) | CPU per mail, worker run (µs) | CPU per mail, relay run (µs) | CPU per mail, without the ledger (µs) | CPU per mail, client alone (µs) | sink alone mails/s | mail bytes | ledger keys added | ledger bytes per posting |")
        details.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(runs, 1):
            details.append(
                f"| {i} | {fmt(r['worker_rate'])} | {fmt(r['relay_rate'])} | {r['ratio']:.2f} | "
                f"{fmt(r['noledger_rate'])} | {r['ledger_ratio']:.2f} | {fmt(r['ceiling_rate'])} | "
                f"{r['worker_total_s']:.2f} | {usage_text(r['worker_usage'], 'worker')} | "
                f"{usage_text(r['relay_usage'], 'relay')} | {usage_text(r['noledger_usage'], 'worker')} | "
                f"{usage_text(r['ceiling_usage'], 'client')} | {fmt(r['sink_rate'])} | "
                f"{r['mail_bytes']:,} | {fmt(r['ledger_keys'])} | {fmt(r['ledger_bytes'] or 0)} |")
        details.append("")

    if "cpu" in res:
        cpu = res["cpu"]
        labels = {"BM_SignUp": ("4. ETL CPU per sign-up: decode + plan + render + encode (ns)",
                                8_000, "per sign-up"),
                  "BM_MailingRecipient": ("4. ETL CPU per mailing recipient: render + encode (ns)",
                                          4_000, "per mailing recipient")}
        for key, (label, goal, what) in labels.items():
            if key in cpu:
                value = median(cpu[key])
                rows.append((label, len(cpu[key]), fmt(value), "", "", f"≤ {goal:,}",
                             verdict(value <= goal)))
                target(f"ETL CPU {what} (Google Benchmark, ns)", fmt(value), f"≤ {goal:,}",
                       value <= goal, ("CPU per event", key, value, goal))
        ins = res.get("instructions", {})
        if ins.get("available"):
            for case, what in (("signup", "sign-up"), ("mailing", "mailing recipient")):
                rows.append((f"4. ETL instructions per {what} ({ins['tool'].split()[0]})", 1,
                             fmt(ins[case]), "", "", "", ""))
                targets.append((f"ETL instructions per {what}", fmt(ins[case]),
                                "the same work as above", "reported"))
        else:
            why = ins.get("why", "not measured")
            rows.append(("4. ETL instructions per event", "", "not available", "", "", "", ""))
            targets.append(("ETL instructions per event", f"not available: {why}",
                            "the same work as above", "**not measured**"))
        details.append("### 4. CPU per event\n")
        details.append("`bench_etl_cpu` (Google Benchmark, CPU time per iteration, repetitions of at least "
                       "1 s each) runs the pipeline's own steps without brokers: a sign-up is decoded, "
                       "planned, rendered (`email/welcome`) and encoded; a mailing recipient (the event "
                       "decoded and planned once) is rendered (`email/new_movies`) and encoded.\n")
        if ins.get("available"):
            small, big = ins["counts"]
            details.append(f"Instructions per event: `bench_etl_cpu --count signup|mailing N` run for "
                           f"N = {small:,} and {big:,} under `{ins['tool']}`; the difference of the two "
                           f"counts divided by {big - small:,}, so start-up and template loading cancel "
                           "out. Unlike time, this does not move with the load of a shared machine.\n")
        details.append("| benchmark | repetitions (ns) |")
        details.append("|---|---|")
        for key, values in cpu.items():
            details.append(f"| `{key}` | {', '.join(fmt(v) for v in values)} |")
        details.append("")

    if "deferral" in res:
        runs = res["deferral"]
        park = median([r["park_rate"] for r in runs])
        ceiling = median([r["ceiling_rate"] for r in runs])
        ratio = median([r["ratio"] for r in runs])
        rows.append((f"5. Deferral: {a.deferrals:,} postings inside quiet hours → parked in a delay "
                     "queue (postings/s); ceiling: the bare republisher", len(runs), fmt(park),
                     fmt(ceiling), f"{ratio:.2f}", "≥ 0.80", verdict(ratio >= 0.8)))
        pu = median_usage([r["park_usage"] for r in runs])
        cu = median_usage([r["ceiling_usage"] for r in runs])
        if pu and cu:
            rows.append(("5. CPU per parked posting, all processes (µs; ratio = republisher / "
                         "worker)", len(runs), fmt(total_cpu(pu)), fmt(total_cpu(cu)),
                         f"{total_cpu(cu) / total_cpu(pu):.2f}", "", ""))
        rows.append(("5. Release once the quiet hours end: mails accepted (mails/s)", len(runs),
                     fmt(median([r["release_rate"] for r in runs])), "", "", "", ""))
        rows.append(("5. End of the quiet hours → last mail accepted (s)", len(runs),
                     fmt(median([r["end_to_last_s"] for r in runs]), 1), "", "", "", ""))
        target("Deferral: parking / the bare republisher", f"{ratio:.2f}", "≥ 0.80", ratio >= 0.8,
               ("deferral ratio", ratio, park, ceiling))
        details.append("### 5. Deferral\n")
        details.append(
            f"{a.deferrals:,} postings (copies of a sign-up posting the ETL made, each with its own "
            "`posting_id`, set to `quiet_hours: respect` for a recipient in UTC) are queued before "
            f"the worker starts (`SMTP_CONCURRENCY={a.smtp_connections}`, ledger on) with "
            "`QUIET_HOURS` ending a set time after its start, `QUIET_HOURS_SPREAD=0` and one delay "
            "tier as long, so the worker parks every posting in that delay queue (a confirmed copy, "
            "then the acknowledgement) and each copy comes back after the end and is sent. Parking "
            "is timed like the ceiling, from the first to the last copy in the delay queue; the "
            "release from the first to the last mail accepted. The quiet hours last long enough to "
            "park everything at half the ceiling's pace (at least 30 s); a worker slower than that is timed on what it parked by the end.\n")
        details.append(
            f"The ceiling (`bench_amqp republish`): {a.smtp_connections} connections, prefetch "
            f"{a.prefetch} each, consume the same postings from the work queue, publish each "
            "message's body and properties as a persistent copy into a delay queue with at most "
            f"{a.confirm_window} unconfirmed, and acknowledge the originals once their copies are "
            "confirmed (multiple).\n")
        details.append("| run | parked/s | republisher/s | ratio | quiet hours after the start (s) | parked by the end | sent before the end | released mails/s | end → first mail (s) | end → last mail (s) | CPU per posting, parking (µs) | CPU per posting, republisher (µs) | CPU per mail, release (µs) |")
        details.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(runs, 1):
            details.append(
                f"| {i} | {fmt(r['park_rate'])} | {fmt(r['ceiling_rate'])} | {r['ratio']:.2f} | "
                f"{r['quiet_s']} | {fmt(r['parked_by_end'])}{'' if r['complete'] else ' (not all: rate up to the end)'} | {r['sent_early']} | {fmt(r['release_rate'])} | "
                f"{r['end_to_first_s']:.1f} | {r['end_to_last_s']:.1f} | "
                f"{usage_text(r['park_usage'], 'worker')} | {usage_text(r['ceiling_usage'], 'republisher')} | "
                f"{usage_text(r['release_usage'], 'worker')} |")
        details.append("")

    if "latency" in res:
        lat = res["latency"]
        rows.append((f"6. Latency of a single sign-up, produce → SMTP 250: p50 (ms)", lat["mailed"],
                     fmt(lat["p50_ms"], 1), "", "", "", ""))
        rows.append((f"6. Latency of a single sign-up, produce → SMTP 250: p99 (ms)", lat["mailed"],
                     fmt(lat["p99_ms"], 1), "", "", "≤ 50", verdict(lat["p99_ms"] <= 50)))
        ok = lat["p99_ms"] <= 50 and lat["missing"] == 0
        target("Latency of single sign-ups, p99 (ms)",
               f"{lat['p99_ms']:.1f} (p50 {lat['p50_ms']:.1f})"
               + (f", {lat['missing']} not mailed" if lat["missing"] else ""), "≤ 50", ok,
               ("latency", lat))
        details.append("### 6. Latency\n")
        details.append(
            f"The ETL, the worker (ledger on) and a sink of their own run idle; {lat['events']} "
            "`user_signed_up` events (priority `immediate`, the fixture users, each looked up once "
            "before) are produced one at a time by one producer kept connected (`bench_produce`, "
            "librdkafka, `linger.ms=0`); "
            f"the next is produced {lat['gap_ms']} ms after the previous mail was accepted. The "
            "sink notes when it accepted the mail that carries the event's confirm link (the "
            "event's mark, `bench_smtp_sink --mark`); latency = that instant − the instant the "
            "producer handed it to librdkafka. The ETL consumes with "
            f"`KAFKA_CONSUMER_CONFIG={ETL_CONSUMER_CONFIG}`, as in scenario 1.\n")
        details.append("| events | mailed | min (ms) | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |")
        details.append("|---|---|---|---|---|---|---|")
        details.append(f"| {lat['events']} | {lat['mailed']} | {lat['min_ms']:.1f} | {lat['p50_ms']:.1f} | "
                       f"{lat['p90_ms']:.1f} | {lat['p99_ms']:.1f} | {lat['max_ms']:.1f} |")
        details.append("")

    failed = res.get("failed", {})
    for number, why in sorted(failed.items()):
        rows.append((f"{number}. **failed**: {why}", "", "", "", "", "", ""))
        targets.append((f"scenario {number}", f"failed: {why}", "", "**not measured**"))

    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); every figure on this page comes from its last "
        "run, none is typed in. Each service is compared with a bare relay that does what the "
        "service does with a message (consume it, pass it on, acknowledge it) without the "
        "service's own work, run on the same machine, the same messages, in the same run. "
        "Throughputs are measured from the first to the last message (postings appearing in the "
        "queue, mails accepted by the sink), the same way for the service and its ceiling; "
        "\"from start\" times also hold the process start (for the ETL and its relay, the Kafka "
        "group join, which the development broker delays by about 3 s). The machine is shared "
        "and small: compare ratios within one run, not figures across runs.",
        "",
        "## Targets",
        "",
        "Issue 12 (and issue 11's cost of the ledger). Ratios are the medians of the runs' ratios "
        "(service and ceiling of one run against each other).",
        "",
        "| target | measured | goal | met? |",
        "|---|---|---|---|",
    ]
    for row in targets:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    lines += [
        "",
        "## Results",
        "",
        "Medians of the runs. Ratio = service / ceiling, the median of the runs' ratios.",
        "",
        "| scenario | runs | median | ceiling median | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    for k, v in machine():
        lines.append(f"| {k} | {v} |")
    lines.append(f"| date | {bench.started_at.strftime('%Y-%m-%d %H:%M UTC')} |")
    lines.append(f"| duration of `make bench` | {res.get('elapsed_s', 0) / 60:.1f} min (runs only) |")
    lines += ["", "## Command", "", "```sh", "make bench", "# which runs, after a Release build into "
              f"{a.build_dir}/:", "python3 " + " ".join(shlex.quote(x) for x in argv), "```", ""]
    lines += ["## Runs", ""] + details
    lines += ["## Targets not met", ""]
    if not notes and not failed:
        lines.append("None: every target above is met.")
    for note in notes:
        lines.append(explain(note, bench))
        lines.append("")
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")


def share(part, whole):
    return part / whole * 100 if whole else 0.0


def explain(note, bench):
    """Why a target is missed: the measurements of this run that show where the time went."""
    kind = note[0]
    res = bench.results
    cpu = res.get("cpu", {})
    ins = res.get("instructions", {})
    if kind == "ETL throughput ratio":
        _, ratio, etl, relay = note
        runs = res["etl"]
        eu = median_usage([r["etl_usage"] for r in runs])
        ru = median_usage([r["relay_usage"] for r in runs])
        pu = median_usage([r["paced_usage"] for r in runs])
        if not (eu and ru):
            return f"- **ETL throughput, ratio {ratio:.2f} (target 0.90).** (no CPU samples)"
        signup_us = median(cpu.get("BM_SignUp", [])) / 1000 if cpu.get("BM_SignUp") else None
        text = (
            f"- **ETL throughput, ratio {ratio:.2f} to its relay (target 0.90).** {etl:,.0f} "
            f"events/s against {relay:,.0f}. While the ETL ran the machine was "
            f"{eu['busy'] * 100:.0f} % busy and the ETL process used "
            f"{eu['service'] * etl / 1e4:.0f} % of one core; while the relay ran, "
            f"{ru['busy'] * 100:.0f} % and {ru['service'] * relay / 1e4:.0f} %. Per event, all "
            f"processes used {total_cpu(eu):.0f} µs of CPU with the ETL and {total_cpu(ru):.0f} µs "
            f"with the relay: the ETL itself {eu['service']:.0f} µs against the relay's "
            f"{ru['service']:.0f} µs, RabbitMQ {eu.get('rabbitmq', 0):.0f} against "
            f"{ru.get('rabbitmq', 0):.0f} µs, Kafka {eu.get('kafka', 0):.0f} against "
            f"{ru.get('kafka', 0):.0f} µs.")
        if signup_us is not None:
            text += (f" The ETL's own work on a sign-up (decode, plan, render, encode; scenario 4) "
                     f"is {signup_us:.1f} µs of the {eu['service'] - ru['service']:.0f} µs the ETL "
                     "spends per event beyond the relay.")
        if pu and pu.get("rabbitmq", 0) > ru.get("rabbitmq", 0) * 1.1:
            text += (f" Held to the ETL's pace, a bare publisher costs RabbitMQ "
                     f"{pu['rabbitmq']:.0f} µs per message: the slower the messages come, the less "
                     "the broker batches its reads, writes and confirms.")
        if eu["busy"] > 0.9:
            text += (" With the machine that busy, every µs the ETL spends is taken from the "
                     "brokers on the same two cores.")
        return text
    if kind == "worker ratio":
        _, ratio, worker, relay = note
        runs = res["worker"]
        wu = median_usage([r["worker_usage"] for r in runs])
        ru = median_usage([r["relay_usage"] for r in runs])
        if not (wu and ru):
            return f"- **Worker throughput, ratio {ratio:.2f} (target 0.90).** (no CPU samples)"
        return (
            f"- **Worker throughput (ledger on), ratio {ratio:.2f} to its relay (target 0.90).** "
            f"{worker:,.0f} mails/s against {relay:,.0f}. The machine was {wu['busy'] * 100:.0f} % "
            f"busy while the worker ran and {ru['busy'] * 100:.0f} % while the relay ran. Per mail, "
            f"all processes used {total_cpu(wu):.0f} µs of CPU with the worker and "
            f"{total_cpu(ru):.0f} µs with the relay: the worker itself {wu['service']:.0f} µs "
            f"against the relay's {ru['service']:.0f} µs, RabbitMQ {wu.get('rabbitmq', 0):.0f} "
            f"against {ru.get('rabbitmq', 0):.0f} µs, Redis {wu.get('redis', 0):.0f} against "
            f"{ru.get('redis', 0):.0f} µs, the sink {wu.get('sink', 0):.0f} against "
            f"{ru.get('sink', 0):.0f} µs. The relay sends the same mail bytes over as many "
            "connections with the same prefetch, so the difference is the worker's own work per "
            "posting (decoding, policy, MIME building, the ledger's claim and mark) and what it "
            "costs the brokers.")
    if kind == "deferral ratio":
        _, ratio, park, ceiling = note
        runs = res["deferral"]
        pu = median_usage([r["park_usage"] for r in runs])
        cu = median_usage([r["ceiling_usage"] for r in runs])
        if not (pu and cu):
            return f"- **Deferral, ratio {ratio:.2f} (target 0.80).** (no CPU samples)"
        return (
            f"- **Deferral, ratio {ratio:.2f} to the bare republisher (target 0.80).** The worker "
            f"parked {park:,.0f} postings/s, the republisher moved {ceiling:,.0f}/s. The machine "
            f"was {pu['busy'] * 100:.0f} % busy while the worker parked and "
            f"{cu['busy'] * 100:.0f} % during the ceiling; the worker process used "
            f"{pu['service'] * park / 1e4:.0f} % of one core, the republisher "
            f"{cu['service'] * ceiling / 1e4:.0f} %. Per posting, all processes used "
            f"{total_cpu(pu):.0f} µs against {total_cpu(cu):.0f} µs: the worker itself "
            f"{pu['service']:.0f} µs against {cu['service']:.0f} µs, RabbitMQ "
            f"{pu.get('rabbitmq', 0):.0f} against {cu.get('rabbitmq', 0):.0f} µs."
            + (" The worker used little CPU and the machine was not saturated: it waited, which "
               "is what a confirm awaited per copy (rather than a window of them) looks like."
               if pu["busy"] < 0.8 and pu["service"] * park / 1e4 < 60 else ""))
    if kind == "CPU per event":
        _, key, value, goal = note
        case = "signup" if key == "BM_SignUp" else "mailing"
        text = (f"- **ETL CPU {'per sign-up' if case == 'signup' else 'per mailing recipient'}: "
                f"{value / 1000:.1f} µs (target {goal / 1000:.0f} µs).**")
        if ins.get("available"):
            text += (f" {ins[case]:,.0f} instructions per event ({ins['tool']}), "
                     f"{value / ins[case]:.2f} ns per instruction: ")
            text += ("the time is in the instructions, not in stalls; fewer of them is the only way "
                     "down." if value / ins[case] < 0.5 else
                     "more than a cycle or two per instruction: the time may also be the shared "
                     "machine's, compare the instructions from run to run.")
        return text
    if kind == "latency":
        lat = note[1]
        return (f"- **Latency p99 {lat['p99_ms']:.1f} ms (target 50 ms).** Of {lat['events']} single "
                f"sign-ups {lat['mailed']} were mailed: min {lat['min_ms']:.1f}, p50 "
                f"{lat['p50_ms']:.1f}, p90 {lat['p90_ms']:.1f}, max {lat['max_ms']:.1f} ms"
                + (f"; {lat['missing']} were not mailed within 10 s" if lat["missing"] else "")
                + f". The ETL's Kafka consumer waits up to `fetch.wait.max.ms` "
                f"({ETL_CONSUMER_CONFIG.split('=')[1]} ms here) for a fetch to fill; the rest is the "
                "ETL's work, the publish and confirm, the worker's delivery, its ledger claim and "
                "the SMTP exchange.")
    if kind == "ledger ratio":
        _, ratio, worker, without = note
        runs = res["worker"]
        wu = median_usage([r["worker_usage"] for r in runs])
        nu = median_usage([r["noledger_usage"] for r in runs])
        if not (wu and nu):
            return f"- **Worker with the ledger, ratio {ratio:.2f} (target 0.90).** (no CPU samples)"
        return (
            f"- **Worker with the ledger, ratio {ratio:.2f} (target 0.90).** "
            f"{worker:,.0f} mails/s with the ledger against {without:,.0f} without. Per mail, the "
            f"worker itself used {wu['service']:.0f} µs of CPU with the ledger and "
            f"{nu['service']:.0f} µs without, Redis {wu.get('redis', 0):.0f} µs; the machine was "
            f"{wu['busy'] * 100:.0f} % and {nu['busy'] * 100:.0f} % busy. The difference is the "
            "ledger's round trips to Redis (a claim before each send, a mark after it) and "
            "Redis's own CPU, which on two cores is taken from the worker and RabbitMQ.")
    if kind == "sink":
        return ("- **The sink is not faster than every client.** Its figures are not a ceiling "
                "then: the sender benchmarks measured the sink.")
    if kind == "Auth calls":
        _, calls, expected, _ = note
        return (f"- **Auth calls {calls}, expected {expected}.** The ETL asked the Auth service more "
                "(or less) often than once per page: see the ETL log of the run.")
    if kind == "peak RSS":
        _, big, small, _ = note
        runs = res["mailing"]
        return (f"- **Peak RSS {big:.1f} MB (target 32 MB).** The ETL's `VmHWM` once every posting "
                f"of the largest mailing was queued; {small:.1f} MB for the smallest audience, so "
                + ("the peak does not come from the audience's size but from what the process "
                   "holds anyway (libraries, the consumer's prefetch, buffers)."
                   if big <= small * 1.10 else "it grows with the audience."))
    if kind == "RSS growth":
        _, growth, big, small = note
        return (f"- **Peak RSS grows with the audience ({small:.1f} → {big:.1f} MB, ×{growth:.2f}).**")
    return f"- {note}"


def main():
    # A stopped `make bench` still stops its stack and processes (the finally in Bench.run).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    args = parse_args()
    bench = Bench(args)
    try:
        if args.from_results:
            # Rewrites the page from a saved run (BUILD_DIR/bench-work/results.json): for editing
            # the text around the figures, never the figures.
            with open(args.from_results) as f:
                saved = json.load(f)
            bench.results = saved["results"]
            if "mailing" in bench.results:
                bench.results["mailing"] = {int(k): v for k, v in bench.results["mailing"].items()}
            bench.started_at = datetime.datetime.fromisoformat(saved["started_at"])
        else:
            bench.run()
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    except subprocess.TimeoutExpired as e:
        log(f"FAILED: timed out: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    with open(os.path.join(bench.work, "results.json"), "w") as f:
        json.dump({"results": bench.results, "started_at": bench.started_at.isoformat()}, f)
    out = os.path.join(SOURCE_DIR, args.out) if not os.path.isabs(args.out) else args.out
    write_report(bench, out, [os.path.relpath(sys.argv[0], SOURCE_DIR)] + sys.argv[1:])
    log(f"wrote {os.path.relpath(out, SOURCE_DIR)}")
    with open(out) as f:
        text = f.read()
    print(text[:text.index("## Machine")] if "## Machine" in text else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
