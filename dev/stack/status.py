#!/usr/bin/env python3
"""What a stack of stack.sh is doing: `make status`, or `stack.sh status DIR`.

  status.py [DIR]     DIR: the stack's folder (default run/ of the source tree)

Prints, for a person, in sections:
  programs    each program of the stack up or down (supervisord), whether each broker answers
              on its port, and whether the two services are ready (their /readyz)
  queues      per channel the depth of the work queue, of the delay queues (in all and per
              tier) and of the dead-letter queue, and the work queue's consumers
  held back   postings waiting in delay queues: how many, why (x-defer-reason) and when the
              next one is released (x-deliver-at); read through RabbitMQ's management API
  kafka       the ETL's consumer group on the events topic: committed offset, end and lag per
              partition; events in the dead-letter topic
  urls        where to look: inbox, RabbitMQ management, Prometheus, metrics, Auth, Kafka

The services' names come from their environment as supervisord hands it over, so a stack
started with RABBITMQ_EXCHANGE, NOTIFY_EVENTS_TOPIC, NOTIFY_EVENTS_DLQ_TOPIC or KAFKA_GROUP_ID
set is shown with them when status.py runs with the same settings. NOTIFY_MANAGEMENT_URL names
a management API that stack.env does not (a test stack whose RabbitMQ got the plugin later).

Exit status:
  0  the stack runs: every program up, both services ready, every broker answers
  3  no stack runs in DIR (one line says so)
  4  the stack runs in part: something is down, not ready or not answering (see the output)
  2  usage

Only the standard library; every probe has a timeout of about a second and all run at once, so
the answer comes within about two seconds even when a broker hangs. (A test stack has no
management API: its queue depths come from rabbitmqctl, which takes a few seconds more.)

Peeking at delay queues does not disturb them: the management API's "get" with ackmode
reject_requeue_true takes up to PEEK_LIMIT postings from the head of a queue and returns them
at once; a classic queue puts requeued messages back in their place, and their expiry (the
queue's TTL, counted from when they entered) is kept, so nothing is reordered or held longer.
"""
import base64
import concurrent.futures
import configparser
import datetime
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client

EXIT_OK, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_PARTLY = 0, 2, 3, 4

TIMEOUT = 1.0  # seconds, for each network probe
RABBITMQCTL_TIMEOUT = 10.0  # the Erlang CLI starts a VM: test stacks only
PEEK_LIMIT = 200  # postings looked at per delay queue
CHANNELS = ("email", "webhook")
BROKERS = ("rabbitmq", "kafka", "redis", "maildev", "auth", "prometheus")
SERVICES = ("etl", "worker")
REASONS = {  # x-defer-reason, as the worker writes it (postings.md)
    "quiet_hours": "quiet hours",
    "scheduled": "scheduled (not_before)",
    "retry": "retry after a failure",
    "throttled": "throttled (mail rate caps)",
    "claimed": "claimed by another worker",
    "deferred": "later hop of a deferral",
    "deferred-retry": "retry, later hop",
}


def defer_reason(headers):
    """x-defer-reason; a later hop says only `deferred` (the worker does not carry the first
    reason on), but a retry's hops keep x-attempts."""
    reason = str(headers.get("x-defer-reason") or "unknown")
    if reason == "deferred":
        try:
            if int(headers.get("x-attempts") or 0) > 0:
                return "deferred-retry"
        except ValueError:
            pass
    return reason


# ---------------------------------------------------------------------------------------------
# The stack's folder


def read_env_file(path):
    """KEY=VALUE lines (stack.env, stack.state) as a dict; {} when the file is missing."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.rstrip("\n").partition("=")
                if sep and key and not key.startswith("#"):
                    out[key.strip()] = value
    except OSError:
        pass
    return out


def read_supervisord_conf(path):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(path)
    except configparser.Error:
        return None
    return parser


def program_environment(conf, program):
    """The environment= line of [program:NAME] as a dict."""
    if conf is None or not conf.has_option(f"program:{program}", "environment"):
        return {}
    line = conf.get(f"program:{program}", "environment")
    return {k: v for k, v in re.findall(r'([A-Z_][A-Z0-9_]*)="([^"]*)"', line)}


def stack_addresses(stack_dir, conf):
    """What stack.env says, else what the stack's rendered configuration says: stack.sh writes
    stack.env only once every program is ready (a dev stack whose services did not start has
    none), while its ports are in supervisord.conf and rabbitmq.conf from the start."""
    derived = {}

    def command_flag(program, pattern):
        if conf is None or not conf.has_option(f"program:{program}", "command"):
            return None
        m = re.search(pattern, conf.get(f"program:{program}", "command"))
        return m.group(1) if m else None

    rabbitmq = program_environment(conf, "rabbitmq")
    if rabbitmq.get("RABBITMQ_NODE_PORT"):
        port = rabbitmq["RABBITMQ_NODE_PORT"]
        derived["RABBITMQ_URL"] = f"amqp://guest:guest@127.0.0.1:{port}/%2f"
    try:
        with open(os.path.join(stack_dir, "rabbitmq", "rabbitmq.conf")) as f:
            m = re.search(r"^management\.tcp\.port\s*=\s*(\d+)", f.read(), re.M)
        if m:
            derived["MANAGEMENT_URL"] = f"http://127.0.0.1:{m.group(1)}"
    except OSError:
        pass
    try:
        with open(os.path.join(stack_dir, "kafka.bootstrap")) as f:
            derived["KAFKA_BOOTSTRAP_SERVERS"] = f.read().strip()
    except OSError:
        pass
    web = command_flag("maildev", r"--web (\d+)")
    if web:
        derived["INBOX_URL"] = f"http://127.0.0.1:{web}"
    auth = command_flag("auth", r"--port (\d+)")
    if auth:
        derived["AUTH_URL"] = f"http://127.0.0.1:{auth}"
    prometheus = command_flag("prometheus", r"--web\.listen-address=(\S+)")
    if prometheus:
        derived["PROMETHEUS_URL"] = f"http://{prometheus}"
    for service in SERVICES:
        port = program_environment(conf, service).get("METRICS_PORT")
        if port:
            derived[f"{service.upper()}_METRICS_URL"] = f"http://127.0.0.1:{port}/metrics"
    redis = read_env_file(os.path.join(stack_dir, "stack.state")).get("REDIS_PORT")
    if redis:
        derived["REDIS_PORT"] = redis
        derived["LEDGER_URL"] = f"redis://127.0.0.1:{redis}/0"
    derived.update(read_env_file(os.path.join(stack_dir, "stack.env")))
    return derived


def supervisord_running(stack_dir):
    """True when the supervisord of this folder runs (the same test as stack.sh)."""
    try:
        with open(os.path.join(stack_dir, "supervisord.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except PermissionError:  # another user's stack: the pid is all we can check
        return True
    except OSError:
        return False
    # A pid file left from an earlier boot may name an unrelated process now.
    return ("NOTIFY_STACK_DIR=" + stack_dir).encode() in environ


# ---------------------------------------------------------------------------------------------
# Probes: each returns data, never raises, never waits longer than its timeout


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path, timeout):
        super().__init__()
        self.unix_path = path
        self.timeout = timeout

    def make_connection(self, host):
        return UnixHTTPConnection(self.unix_path, self.timeout)


def program_states(stack_dir, conf):
    """{program: (state, description)} from supervisord, over its socket as supervisorctl
    talks to it (XML-RPC), which spares starting supervisorctl (a Python program of its own);
    supervisorctl only when the socket is not in the configuration."""
    sock = conf.get("unix_http_server", "file", fallback=None) if conf else None
    if sock:
        try:
            proxy = xmlrpc.client.ServerProxy("http://localhost",
                                              transport=UnixTransport(sock, TIMEOUT))
            return {p["name"]: (p["statename"], p.get("description", ""))
                    for p in proxy.supervisor.getAllProcessInfo()}
        except (OSError, xmlrpc.client.Error, http.client.HTTPException) as e:
            return {"error": str(e)}
    try:
        res = subprocess.run(["supervisorctl", "-c", os.path.join(stack_dir, "supervisord.conf"),
                              "status"], capture_output=True, text=True, timeout=3 * TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    states = {}
    for line in res.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[1].isupper():
            states[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return states or {"error": (res.stderr or res.stdout).strip() or "no answer"}


def tcp_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=TIMEOUT):
            return True
    except (OSError, ValueError):
        return False


def redis_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=TIMEOUT) as s:
            s.settimeout(TIMEOUT)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except (OSError, ValueError):
        return False


def http_get(url, auth=None, timeout=TIMEOUT, data=None):
    """(status, body) of a GET (or a POST of `data`, JSON); (None, why) when nothing answered."""
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    if data is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(data).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read(4 << 20).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read(4096).decode("utf-8", "replace")
    except (OSError, ValueError, http.client.HTTPException) as e:
        return None, str(getattr(e, "reason", e))


def readiness(metrics_url):
    """(ready, text) from a service's /readyz beside its /metrics."""
    if not metrics_url:
        return None, "no metrics port known"
    base = metrics_url[: -len("/metrics")] if metrics_url.endswith("/metrics") else metrics_url
    status, body = http_get(base + "/readyz")
    if status is None:
        return False, f"/readyz does not answer ({body})"
    if status == 200:
        return True, "ready"
    return False, " ".join(body.split())[:160] or f"/readyz answered {status}"


# --- RabbitMQ --------------------------------------------------------------------------------


def tier_seconds(name):
    """10s -> 10, 1m -> 60, ... from a delay queue's tier; None when not a duration."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", name)
    if not m:
        return None
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def queues_from_management(url, auth):
    cols = "name,messages,consumers,arguments"
    status, body = http_get(f"{url}/api/queues/%2f?columns={cols}", auth=auth, timeout=TIMEOUT)
    if status != 200:
        raise RuntimeError(f"management API: {status or ''} {body}".replace(":  ", ": ").strip())
    return {q["name"]: {"messages": q.get("messages") or 0, "consumers": q.get("consumers") or 0,
                        "ttl": (q.get("arguments") or {}).get("x-message-ttl")}
            for q in json.loads(body)}


def queues_from_rabbitmqctl(node, stack_dir):
    cmd = ["rabbitmqctl", "-n", node, "-q", "list_queues", "name", "messages", "consumers"]
    # RabbitMQ runs as the rabbitmq user when the stack was started as root (its cookie is in
    # /var/lib/rabbitmq), else as the user, with the stack's own home folder.
    envs = [None, dict(os.environ, HOME=os.path.join(stack_dir, "rabbitmq", "home"))]
    last = "no answer"
    for env in envs:
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                 timeout=RABBITMQCTL_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RuntimeError(f"rabbitmqctl: {e}")
        if res.returncode == 0:
            out = {}
            for line in res.stdout.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1].isdigit():
                    out[parts[0]] = {"messages": int(parts[1]), "consumers": int(parts[2]),
                                     "ttl": None}
            return out
        last = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["failed"]
        last = last[0]
    raise RuntimeError(f"rabbitmqctl: {last}")


def channel_queues(queues, exchange):
    """Per channel: work, dead, and the delay queues as [(tier, seconds, depth, name)] by tier."""
    out = {}
    for ch in CHANNELS:
        work = f"{exchange}.{ch}"
        delays = []
        for name, q in queues.items():
            if name.startswith(work + ".delay."):
                tier = name[len(work + ".delay."):]
                seconds = q["ttl"] / 1000 if q["ttl"] else tier_seconds(tier)
                delays.append((tier, seconds, q["messages"], name))
        delays.sort(key=lambda d: (d[1] is None, d[1] or 0, d[0]))
        out[ch] = {"work": queues.get(work), "dead": queues.get(work + ".dead"), "delays": delays}
    return out


def peek(url, auth, queue, count, timeout):
    """Up to `count` postings from the head of `queue`, given back at once (see the top)."""
    status, body = http_get(f"{url}/api/queues/%2f/{urllib.parse.quote(queue, safe='')}/get",
                            auth=auth, timeout=timeout,
                            data={"count": count, "ackmode": "reject_requeue_true",
                                  "encoding": "auto", "truncate": 1})
    if status != 200:
        raise RuntimeError(f"get from {queue}: {status or ''} {body}".replace(":  ", ": ").strip())
    return [m.get("properties", {}).get("headers") or {} for m in json.loads(body)]


def parse_utc(text):
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        try:
            return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except (TypeError, ValueError):
            return None


def held_back(url, auth, by_channel, deadline):
    """Per channel and reason: count, the earliest and latest x-deliver-at; and how many postings
    were left unread (beyond PEEK_LIMIT per queue)."""
    groups = {}
    unread = 0
    jobs = [(ch, name, depth) for ch, c in by_channel.items()
            for (_tier, _s, depth, name) in c["delays"] if depth > 0]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        timeout = max(0.3, deadline - time.monotonic())
        futures = {pool.submit(peek, url, auth, name, min(depth, PEEK_LIMIT), timeout): (ch, depth)
                   for ch, name, depth in jobs}
        for fut, (ch, depth) in futures.items():
            headers = fut.result()
            unread += max(0, depth - len(headers))
            for h in headers:
                reason = defer_reason(h)
                at = parse_utc(h.get("x-deliver-at"))
                g = groups.setdefault((ch, reason), {"count": 0, "first": None, "last": None,
                                                     "template": h.get("template")})
                g["count"] += 1
                if at and (g["first"] is None or at < g["first"]):
                    g["first"] = at
                    g["template"] = h.get("template")
                if at and (g["last"] is None or at > g["last"]):
                    g["last"] = at
    return groups, unread


def rabbitmq_report(env, conf, stack_dir):
    # The services' exchange names their queues: RABBITMQ_EXCHANGE as supervisord gives it to
    # them (their program's environment, else its own), default `notifications` (postings.md).
    exchange = (program_environment(conf, "worker").get("RABBITMQ_EXCHANGE")
                or os.environ.get("RABBITMQ_EXCHANGE") or "notifications")
    url = os.environ.get("NOTIFY_MANAGEMENT_URL") or env.get("MANAGEMENT_URL")
    deadline = time.monotonic() + 2 * TIMEOUT  # the queues, then the peeks in what is left
    amqp = urllib.parse.urlparse(env.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1"))
    auth = f"{urllib.parse.unquote(amqp.username or 'guest')}:" \
           f"{urllib.parse.unquote(amqp.password or 'guest')}"
    report = {"exchange": exchange, "source": None, "channels": None, "held": None, "unread": 0,
              "error": None, "held_error": None}
    try:
        if url:
            report["source"] = "management API"
            queues = queues_from_management(url, auth)
        else:
            node = program_environment(conf, "rabbitmq").get("RABBITMQ_NODENAME")
            if not node:
                raise RuntimeError("RabbitMQ's node name is not in supervisord.conf")
            report["source"] = "rabbitmqctl"
            queues = queues_from_rabbitmqctl(node, stack_dir)
    except (RuntimeError, ValueError) as e:
        report["error"] = str(e)
        return report
    report["channels"] = channel_queues(queues, exchange)
    if url:
        try:
            report["held"], report["unread"] = held_back(url, auth, report["channels"], deadline)
        except (RuntimeError, ValueError) as e:
            report["held_error"] = str(e)
    return report


# --- Kafka: the group's offsets, read by notify_offsets (librdkafka) --------------------------


class KafkaError(Exception):
    pass


def offsets_tool(conf):
    """notify_offsets beside the stack's development broker (the same build), or
    NOTIFY_OFFSETS when set."""
    if os.environ.get("NOTIFY_OFFSETS"):
        return os.environ["NOTIFY_OFFSETS"]
    if conf is None or not conf.has_option("program:kafka", "command"):
        return None
    broker = conf.get("program:kafka", "command").split()[0]
    return os.path.join(os.path.dirname(broker), "notify_offsets")


def kafka_offsets(tool, bootstrap, group, topics, timeout=1.5):
    """{topic: {partition: (start, end, committed)}} (committed -1001: none) for the topics
    the cluster has, read by notify_offsets (librdkafka) without joining the group."""
    if not tool or not os.access(tool, os.X_OK):
        raise KafkaError(f"notify_offsets is not built ({tool}): make up builds it")
    command = [tool, "--bootstrap", bootstrap, "--group", group,
               "--timeout-ms", str(int(timeout * 1000))]
    for t in topics:
        command += ["--topic", t]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 1.0)
    except subprocess.TimeoutExpired:
        raise KafkaError(f"Kafka at {bootstrap} did not answer in time")
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise KafkaError(lines[-1] if lines else f"notify_offsets exited {done.returncode}")
    out = {}
    for p in json.loads(done.stdout)["partitions"]:
        out.setdefault(p["topic"], {})[p["partition"]] = (p["start"], p["end"], p["committed"])
    return out


def kafka_report(env, conf):
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        return {"error": "no Kafka address (kafka.bootstrap is missing)"}
    # As the ETL gets them: its program's environment, else supervisord's (ours), else defaults.
    etl = program_environment(conf, "etl")

    def setting(name, default):
        return etl.get(name) or os.environ.get(name) or default

    topic = setting("NOTIFY_EVENTS_TOPIC", "notify_events")
    dlq = setting("NOTIFY_EVENTS_DLQ_TOPIC", topic + ".dlq")
    group = setting("KAFKA_GROUP_ID", "etl_notifications")
    report = {"bootstrap": bootstrap, "topic": topic, "dlq": dlq, "group": group}
    try:
        report["offsets"] = kafka_offsets(offsets_tool(conf), bootstrap, group, [topic, dlq])
    except KafkaError as e:
        report["error"] = str(e)
    return report


# ---------------------------------------------------------------------------------------------
# Collecting and printing


def collect(stack_dir):
    conf = read_supervisord_conf(os.path.join(stack_dir, "supervisord.conf"))
    env = stack_addresses(stack_dir, conf)
    state = read_env_file(os.path.join(stack_dir, "stack.state"))
    mode = state.get("MODE", "dev" if env.get("MANAGEMENT_URL") else "test")
    kafka_addr = env.get("KAFKA_BOOTSTRAP_SERVERS", "")
    amqp_port = state.get("AMQP_PORT") or urllib.parse.urlparse(env.get("RABBITMQ_URL", "")).port
    redis_port = state.get("REDIS_PORT") or env.get("REDIS_PORT")
    prometheus = env.get("PROMETHEUS_URL")
    checks = {
        "rabbitmq": (lambda: tcp_answers(amqp_port), f"AMQP 127.0.0.1:{amqp_port}"),
        "kafka": (lambda: tcp_answers(kafka_addr.rpartition(":")[2]), f"Kafka {kafka_addr}"),
        "redis": (lambda: redis_answers(redis_port), f"PING 127.0.0.1:{redis_port}"),
        "maildev": (lambda: http_get(env["INBOX_URL"])[0] is not None,
                    env.get("INBOX_URL", "")),
        "auth": (lambda: tcp_answers(urllib.parse.urlparse(env["AUTH_URL"]).port),
                 env.get("AUTH_URL", "")),
        "prometheus": (lambda: http_get(prometheus + "/-/ready")[0] == 200,
                       f"{prometheus}/-/ready"),
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        f_programs = pool.submit(program_states, stack_dir, conf)
        f_ready = {s: pool.submit(readiness, env.get(f"{s.upper()}_METRICS_URL")) for s in SERVICES}

        def answers(name):
            probe, _what = checks[name]
            try:
                return probe()
            except (KeyError, TypeError, ValueError):
                return False

        f_answers = {b: pool.submit(answers, b) for b in BROKERS}
        f_rabbit = pool.submit(rabbitmq_report, env, conf, stack_dir)
        f_kafka = pool.submit(kafka_report, env, conf)
        return {
            "dir": stack_dir, "mode": mode, "env": env,
            "programs": f_programs.result(),
            "ready": {s: f.result() for s, f in f_ready.items()},
            "answers": {b: (f.result(), checks[b][1]) for b, f in f_answers.items()},
            "rabbitmq": f_rabbit.result(),
            "kafka": f_kafka.result(),
            "now": datetime.datetime.now(datetime.timezone.utc),
        }


def when(at, now):
    """'2026-12-01 08:04:12 UTC (in 12 h 24 min)'."""
    if at is None:
        return "unknown"
    seconds = (at - now).total_seconds()
    span = abs(seconds)
    if span < 90:
        rel = f"{span:.0f} s"
    elif span < 90 * 60:
        rel = f"{span / 60:.0f} min"
    elif span < 48 * 3600:
        rel = f"{int(span // 3600)} h {int(span % 3600 // 60)} min"
    else:
        rel = f"{span / 86400:.1f} days"
    rel = f"in {rel}" if seconds >= 0 else f"due {rel} ago, on its next hop"
    return f"{at:%Y-%m-%d %H:%M:%S} UTC ({rel})"


def table(rows, indent="  "):
    """Rows of cells, columns aligned; a column of numbers (its header too) to the right. The
    last cell of a row is not padded."""
    count = max(map(len, rows))
    widths = [max(len(str(r[i])) for r in rows if i < len(r)) for i in range(count)]
    numeric = [any(isinstance(r[i], int) for r in rows[1:] if i < len(r)) for i in range(count)]
    lines = []
    for r in rows:
        cells = []
        for i, cell in enumerate(r):
            text = str(cell)
            if numeric[i]:
                cells.append(text.rjust(widths[i]))
            elif i == len(r) - 1:
                cells.append(text)
            else:
                cells.append(text.ljust(widths[i]))
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def render(s):
    """The report as lines, and whether everything is up."""
    ok = True
    out = [f"Stack in {s['dir']} ({s['mode']} mode), {s['now']:%Y-%m-%d %H:%M:%S} UTC", ""]

    # Programs
    programs = s["programs"]
    out.append("Programs")
    if "error" in programs:
        out.append(f"  supervisord does not answer: {programs['error']}")
        ok = False
        programs = {}
    rows = [("program", "state", "check", "detail")]
    for name in SERVICES + BROKERS:
        state, desc = programs.get(name, (None, ""))
        if state is None:
            if s["mode"] == "test" and name in SERVICES + ("prometheus",):
                continue  # a test stack runs its services itself, and no Prometheus
            rows.append((name, "missing", "", "not in this stack's supervisord"))
            ok = False
            continue
        up = state == "RUNNING"
        ok = ok and up
        shown = "up" if up else "starting" if state == "STARTING" else f"down ({state})"
        if not up:
            # supervisord describes a stopped or exited program by the time it ended
            since = state in ("STOPPED", "EXITED") and desc and not desc.startswith("Not")
            rows.append((name, shown, "", f"since {desc}" if since else desc))
        elif name in SERVICES:
            ready, text = s["ready"][name]
            ok = ok and bool(ready)
            rows.append((name, shown, "ready" if ready else "not ready", "" if ready else text))
        else:
            answers, what = s["answers"][name]
            ok = ok and answers
            rows.append((name, shown, "answers" if answers else "no answer", what))
    out += table(rows)
    for name in sorted(set(programs) - set(SERVICES + BROKERS)):
        state, desc = programs[name]
        out.append(f"  {name}: {state} {desc}")

    # Queues
    rq = s["rabbitmq"]
    out += ["", f"Queues (RabbitMQ {rq['exchange']}.*, from {rq['source'] or 'nowhere'})"]
    if rq["error"]:
        out.append(f"  not available: {rq['error']}")
        ok = False
    else:
        rows = [("channel", "work", "consumers", "delayed", "dead", "delayed by tier")]
        for ch, c in rq["channels"].items():
            if c["work"] is None:
                rows.append((ch, "-", "-", "-", "-", "queues not declared yet (no service ran)"))
                continue
            delayed = sum(d[2] for d in c["delays"])
            tiers = "  ".join(f"{t} {n}" for t, _s, n, _q in c["delays"]) or "no delay queues yet"
            rows.append((ch, c["work"]["messages"], c["work"]["consumers"], delayed,
                         c["dead"]["messages"] if c["dead"] else "-", tiers))
        out += table(rows)

    # Held back
    out += ["", "Held back in delay queues"]
    if rq["error"]:
        out.append("  not known (no queue depths)")
    elif rq["held"] is None:
        total = sum(d[2] for c in rq["channels"].values() for d in c["delays"])
        why = rq["held_error"] or "reasons and release times need RabbitMQ's management API " \
                                  "(the development stack has it)"
        out.append(f"  {total} postings; {why}")
    elif not rq["held"]:
        out.append("  nothing: no mail or webhook is waiting")
    else:
        rows = [("channel", "reason", "postings", "next release", "last release")]
        first = None
        for (ch, reason), g in sorted(rq["held"].items(),
                                      key=lambda kv: (kv[0][0], kv[1]["first"] or s["now"])):
            rows.append((ch, REASONS.get(reason, reason), g["count"], when(g["first"], s["now"]),
                         f"{g['last']:%Y-%m-%d %H:%M:%S}" if g["last"] else ""))
            if g["first"] and (first is None or g["first"] < first[0]):
                first = (g["first"], ch, reason, g["template"])
        out += table(rows)
        if first:
            out.append(f"  next release: {first[3] or 'a posting'} ({first[1]}, "
                       f"{REASONS.get(first[2], first[2])}) at {when(first[0], s['now'])}")
        if rq["unread"]:
            out.append(f"  ({rq['unread']} postings beyond the first {PEEK_LIMIT} of a queue not "
                       "read: their times may come earlier)")

    # Kafka
    k = s["kafka"]
    out += ["", f"Kafka consumer lag (group {k.get('group')}, topic {k.get('topic')})"]
    if "error" in k:
        out.append(f"  not available: {k['error']}")
        ok = False
    elif k.get("topic") not in k["offsets"]:
        out.append(f"  topic {k['topic']} does not exist yet")
    else:
        rows = [("partition", "committed", "end", "lag")]
        total = 0
        for p, (start, end, committed) in sorted(k["offsets"][k["topic"]].items()):
            base = committed if committed >= 0 else (start or 0)
            lag = max(0, (end or 0) - base) if end is not None else None
            total += lag or 0
            rows.append((p, committed if committed >= 0 else "none", end if end is not None
                         else "?", lag if lag is not None else "?"))
        out += table(rows)
        out.append(f"  total lag {total}")
        dlq = k["offsets"].get(k["dlq"])
        if dlq is not None:
            kept = sum((e or 0) - (b or 0) for b, e, _c in dlq.values())
            out.append(f"  dead-lettered events in {k['dlq']}: {kept}")

    # URLs
    env = s["env"]
    urls = [
        ("inbox", env.get("INBOX_URL")),
        ("RabbitMQ management", env.get("MANAGEMENT_URL") and env["MANAGEMENT_URL"] + "/"),
        ("Prometheus", env.get("PROMETHEUS_URL") and env["PROMETHEUS_URL"] + "/classic/graph"),
        ("ETL metrics", env.get("ETL_METRICS_URL")),
        ("worker metrics", env.get("WORKER_METRICS_URL")),
        ("Auth", env.get("AUTH_URL")),
        ("Kafka bootstrap", env.get("KAFKA_BOOTSTRAP_SERVERS") or k.get("bootstrap")),
        ("RabbitMQ (AMQP)", env.get("RABBITMQ_URL")),
        ("Redis (ledger)", env.get("LEDGER_URL")),
    ]
    out += ["", "URLs"]
    urls = [(name, u) for name, u in urls if u]
    out += table(urls) if urls else ["  not known (no stack.env, no supervisord.conf)"]
    return out, ok


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        sys.stderr.write(__doc__)
        return EXIT_USAGE
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "run")
    stack_dir = os.path.realpath(argv[1] if len(argv) == 2 else default)
    if not supervisord_running(stack_dir):
        mode = read_env_file(os.path.join(stack_dir, "stack.state")).get("MODE")
        if mode == "dev" or (mode is None and stack_dir == os.path.realpath(default)):
            print("the development stack is not running (make up starts it)")
        else:
            print(f"no stack is running in {stack_dir}")
        return EXIT_NOT_RUNNING
    lines, ok = render(collect(stack_dir))
    print("\n".join(lines))
    return EXIT_OK if ok else EXIT_PARTLY


if __name__ == "__main__":
    sys.exit(main(sys.argv))
