#!/usr/bin/env python3
"""`make status` (dev/stack/status.py) against the broker stack of the test run.

  status_integration.py --stack DIR      DIR: the CTest fixture's stack (stack_up)

- An empty folder: one line and exit status 3.
- The fixture stack: every section, exit status 0. Its RabbitMQ gets the management plugin
  (a test stack has none; the development stack has it) on a free port, so that the postings
  held in delay queues are read as on the development stack. Queues of an exchange of this
  test's own (RABBITMQ_EXCHANGE) get postings through the management API: their depths, the
  reasons and release times must show, and looking at them must leave the delay queue's order
  as it was. Then the same through rabbitmqctl (no management URL): depths only.
- Kafka: events on a topic of this test's own and an offset committed for a group of its own
  (NOTIFY_EVENTS_TOPIC, KAFKA_GROUP_ID): the lag per partition.
- A stack in part up (a program stopped, a service not ready): exit status 4, from the report
  of a made-up state (the fixture's programs are shared with other tests and stay up).
"""
import argparse
import base64
import datetime
import json
import os
import re
import string
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
import uuid

SOURCE = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
STATUS = os.path.join(SOURCE, "dev", "stack", "status.py")
sys.path.insert(0, os.path.dirname(STATUS))
import status  # noqa: E402  (the module under test, for its render())

STACK = None  # set from the command line
SECTIONS = ["Programs", "Queues", "Held back in delay queues", "Kafka consumer lag", "URLs"]


def read_env(path):
    return status.read_env_file(path)


def run_status(stack_dir, **env):
    started = time.monotonic()
    res = subprocess.run([sys.executable, STATUS, stack_dir], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, **env))
    return res, time.monotonic() - started


def rabbitmq_cli(args, stack_dir, extra_env=None, timeout=180):
    """rabbitmqctl or rabbitmq-plugins against the stack's node; tries the cookie of the
    rabbitmq user first, then the stack's own home folder (RabbitMQ run as the user)."""
    last = None
    for home in (None, os.path.join(stack_dir, "rabbitmq", "home")):
        env = dict(os.environ, **(extra_env or {}))
        if home:
            env["HOME"] = home
        last = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
        if last.returncode == 0:
            return last.stdout
    raise AssertionError(f"{' '.join(args)} failed: {last.stderr or last.stdout}")


def enable_management(stack_dir):
    """The management API's URL, the plugin enabled on a free port if it is not yet."""
    with open(os.path.join(stack_dir, "supervisord.conf")) as f:
        node = re.search(r'RABBITMQ_NODENAME="([^"]+)"', f.read()).group(1)
    ctl = ["rabbitmqctl", "-n", node, "-q"]
    current = rabbitmq_cli(ctl + ["eval", "application:get_env(rabbitmq_management, tcp_config)."],
                           stack_dir)
    plugins_file = os.path.join(stack_dir, "rabbitmq", "enabled_plugins")
    with open(plugins_file) as f:
        enabled = "rabbitmq_management" in f.read()
    m = re.search(r"\{port,(\d+)\}", current.replace(" ", ""))
    if enabled and m:
        return f"http://127.0.0.1:{m.group(1)}"
    port = subprocess.run([sys.executable, os.path.join(SOURCE, "dev", "stack", "probe.py"),
                           "free-ports", "1"], capture_output=True, text=True,
                          check=True).stdout.strip()
    rabbitmq_cli(ctl + ["eval", "application:set_env(rabbitmq_management, tcp_config, "
                                f'[{{port, {port}}}, {{ip, "127.0.0.1"}}]).'], stack_dir)
    rabbitmq_cli(["rabbitmq-plugins", "-n", node, "enable", "rabbitmq_management"], stack_dir,
                 {"RABBITMQ_ENABLED_PLUGINS_FILE": plugins_file})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if status.http_get(url + "/api/overview", auth="guest:guest")[0] == 200:
            return url
        time.sleep(0.5)
    raise AssertionError("the management API did not come up")


class Management:
    def __init__(self, url):
        self.url = url + "/api"
        self.auth = "Basic " + base64.b64encode(b"guest:guest").decode()

    def call(self, method, path, data=None):
        request = urllib.request.Request(
            self.url + path, method=method,
            data=json.dumps(data).encode() if data is not None else None,
            headers={"Authorization": self.auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def declare(self, queue, arguments):
        self.call("PUT", f"/queues/%2f/{queue}", {"durable": True, "arguments": arguments})

    def publish(self, queue, headers):
        reply = self.call("POST", "/exchanges/%2f/amq.default/publish", {
            "routing_key": queue, "payload": "{}", "payload_encoding": "string",
            "properties": {"delivery_mode": 2, "headers": headers}})
        assert reply["routed"], queue

    def depth(self, queue):
        return self.call("GET", f"/queues/%2f/{queue}").get("messages")  # none before stats

    def take_all(self, queue, count):
        return self.call("POST", f"/queues/%2f/{queue}/get",
                         {"count": count, "ackmode": "ack_requeue_false", "encoding": "auto"})


def utc(text):
    return text.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def section(stdout, title):
    """The lines of one section (from its title to the next blank line)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def row(lines, first):
    return next(line.split() for line in lines if line.split()[:1] == [first])


class StatusTest(unittest.TestCase):
    maxDiff = None

    def test_empty_folder_is_one_line_and_exit_3(self):
        with tempfile.TemporaryDirectory() as empty:
            res, _ = run_status(empty)
        self.assertEqual(res.returncode, 3, res.stdout + res.stderr)
        self.assertEqual(res.stdout, f"no stack is running in {os.path.realpath(empty)}\n")
        self.assertEqual(res.stderr, "")

    def test_a_missing_folder_is_not_running_either(self):
        res, _ = run_status(os.path.join(tempfile.gettempdir(), f"no-such-{uuid.uuid4().hex}"))
        self.assertEqual(res.returncode, 3)
        self.assertEqual(len(res.stdout.splitlines()), 1)

    def test_partly_up_exits_4(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        state = {
            "dir": "/x", "mode": "dev", "env": {}, "now": now,
            "programs": {name: ("RUNNING", "") for name in status.SERVICES + status.BROKERS},
            "ready": {"etl": (True, "ready"), "worker": (False, "not ready: email#0: rabbitmq")},
            "answers": {b: (True, b) for b in status.BROKERS},
            "rabbitmq": {"exchange": "notifications", "source": "management API", "channels": None,
                         "held": None, "unread": 0, "error": "management API: 503",
                         "held_error": None},
            "kafka": {"group": "g", "topic": "t", "error": "Kafka did not answer in time"},
        }
        lines, ok = status.render(state)
        self.assertFalse(ok)
        self.assertRegex("\n".join(lines), r"worker\s+up\s+not ready\s+not ready: email#0")
        state["ready"]["worker"] = (True, "ready")
        state["programs"]["kafka"] = ("FATAL", "Exited too quickly")
        lines, ok = status.render(state)
        self.assertFalse(ok)
        self.assertEqual(row(lines, "kafka")[:3], ["kafka", "down", "(FATAL)"])

    def test_reasons_of_later_hops(self):
        self.assertEqual(status.defer_reason({"x-defer-reason": "quiet_hours"}), "quiet_hours")
        self.assertEqual(status.defer_reason({"x-defer-reason": "deferred"}), "deferred")
        self.assertEqual(status.defer_reason({"x-defer-reason": "deferred", "x-attempts": "0"}),
                         "deferred")
        self.assertEqual(status.defer_reason({"x-defer-reason": "deferred", "x-attempts": "3"}),
                         "deferred-retry")
        self.assertEqual(status.defer_reason({}), "unknown")

    def test_addresses_without_stack_env(self):
        """A dev stack whose services did not start has no stack.env: the addresses come from
        its rendered configuration."""
        with tempfile.TemporaryDirectory() as d:
            values = {"STACK_DIR": d, "BIN_DIR": "/bin", "SOURCE_DIR": SOURCE,
                      "SUPERVISOR_SOCKET": d + "/s.sock", "AMQP_PORT": "5672",
                      "DIST_PORT": "25672", "SMTP_PORT": "1025", "WEB_PORT": "8025",
                      "AUTH_PORT": "8081", "RABBITMQ_NODENAME": "n@localhost",
                      "AUTORESTART": "true", "PROMETHEUS_PORT": "9090",
                      "ETL_METRICS_PORT": "9464", "WORKER_METRICS_PORT": "9465",
                      "REDIS_PORT": "6379", "RABBITMQ_USER_LINE": "", "RABBITMQ_HOME_DIR": d}
            rendered = ""
            for name in ("supervisord.conf.in", "services.conf.in"):
                with open(os.path.join(SOURCE, "dev", "stack", name)) as f:
                    rendered += string.Template(f.read()).safe_substitute(values)
            with open(os.path.join(d, "supervisord.conf"), "w") as f:
                f.write(rendered)
            os.makedirs(os.path.join(d, "rabbitmq"))
            with open(os.path.join(d, "rabbitmq", "rabbitmq.conf"), "w") as f:
                f.write("management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = 15672\n")
            with open(os.path.join(d, "stack.state"), "w") as f:
                f.write("MODE=dev\nAMQP_PORT=5672\nREDIS_PORT=6379\n")
            with open(os.path.join(d, "kafka.bootstrap"), "w") as f:
                f.write("127.0.0.1:40001\n")
            conf = status.read_supervisord_conf(os.path.join(d, "supervisord.conf"))
            self.assertEqual(status.stack_addresses(d, conf), {
                "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/%2f",
                "MANAGEMENT_URL": "http://127.0.0.1:15672",
                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:40001",
                "INBOX_URL": "http://127.0.0.1:8025",
                "AUTH_URL": "http://127.0.0.1:8081",
                "PROMETHEUS_URL": "http://127.0.0.1:9090",
                "ETL_METRICS_URL": "http://127.0.0.1:9464/metrics",
                "WORKER_METRICS_URL": "http://127.0.0.1:9465/metrics",
                "REDIS_PORT": "6379",
                "LEDGER_URL": "redis://127.0.0.1:6379/0",
            })
            self.assertEqual(conf.get("unix_http_server", "file"), d + "/s.sock")

    def test_fixture_stack(self):
        env = read_env(os.path.join(STACK, "stack.env"))
        self.assertTrue(env, f"no stack.env in {STACK}: is the stack_up fixture running?")

        # Postings in queues of an exchange of this test's own.
        mgmt_url = enable_management(STACK)
        mgmt = Management(mgmt_url)
        exchange = f"status_test_{uuid.uuid4().hex[:8]}"
        email, webhook = f"{exchange}.email", f"{exchange}.webhook"
        back = {"x-dead-letter-exchange": exchange}
        mgmt.declare(email, {"x-max-priority": 9})
        mgmt.declare(webhook, {"x-max-priority": 9})
        mgmt.declare(email + ".dead", {})
        mgmt.declare(webhook + ".dead", {})
        for ch, q in (("email", email), ("webhook", webhook)):
            for tier, ms in (("1h", 3_600_000), ("6h", 21_600_000)):
                mgmt.declare(f"{q}.delay.{tier}", dict(back, **{"x-message-ttl": ms,
                                                               "x-dead-letter-routing-key": ch}))
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        quiet = [now + datetime.timedelta(hours=9, minutes=m) for m in (7, 3, 12)]
        scheduled = now + datetime.timedelta(days=3)
        retry = now + datetime.timedelta(minutes=20)
        for _ in range(3):
            mgmt.publish(email, {"template": "email/welcome"})
        mgmt.publish(email + ".dead", {"x-dead-reason": "permanent_failure"})
        for at in quiet:
            mgmt.publish(email + ".delay.1h", {"template": "email/welcome",
                                               "x-defer-reason": "quiet_hours",
                                               "x-deliver-at": utc(at)})
        mgmt.publish(email + ".delay.6h", {"template": "email/digest",
                                           "x-defer-reason": "scheduled",
                                           "x-deliver-at": utc(scheduled)})
        mgmt.publish(webhook + ".delay.1h", {"template": "webhook/signup",
                                             "x-defer-reason": "retry", "x-attempts": "1",
                                             "x-deliver-at": utc(retry)})
        # The management API's counts are RabbitMQ's statistics, refreshed every 5 s.
        deadline = time.monotonic() + 30
        while mgmt.depth(email) != 3 or mgmt.depth(email + ".delay.1h") != 3:
            self.assertLess(time.monotonic(), deadline, "queue statistics not updated")
            time.sleep(0.5)

        # Kafka: 3 events on a topic of this test's own, offset 1 committed on one partition.
        topic, group = f"{exchange}_events", f"{exchange}_group"
        ends = {}
        for i in range(3):
            out = subprocess.run([os.path.join(env["BIN_DIR"], "notify_emit"), "--bootstrap",
                                  env["KAFKA_BOOTSTRAP_SERVERS"], "--topic", topic, "--raw",
                                  json.dumps({"n": i}), "--key", "same-key"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
            m = re.search(r"partition (\d+) offset (\d+)", out)
            ends[int(m.group(1))] = int(m.group(2)) + 1
        (partition, end), = ends.items()  # one key: one partition
        self.assertEqual(end, 3)
        commit_offset(env["KAFKA_BOOTSTRAP_SERVERS"], group, topic, 1)

        settings = {"RABBITMQ_EXCHANGE": exchange, "NOTIFY_EVENTS_TOPIC": topic,
                    "KAFKA_GROUP_ID": group}
        res, took = run_status(STACK, NOTIFY_MANAGEMENT_URL=mgmt_url, **settings)
        print(res.stdout)
        print(f"status.py with the management API took {took:.2f} s")
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        titles = [line for line in res.stdout.splitlines() if line and not line.startswith(" ")]
        self.assertTrue(titles[0].startswith(f"Stack in {STACK} (test mode)"), titles)
        self.assertEqual(len(titles), 1 + len(SECTIONS), titles)
        for title, expected in zip(titles[1:], SECTIONS):
            self.assertTrue(title.startswith(expected), titles)

        programs = section(res.stdout, "Programs")
        for name in status.BROKERS[:-1]:  # no Prometheus in a test stack
            self.assertEqual(row(programs, name)[1:3], ["up", "answers"], programs)

        queues = section(res.stdout, "Queues")
        self.assertIn("management API", queues[0])
        # channel, work, consumers, delayed, dead, then the tiers in the order of their TTL
        self.assertEqual(row(queues, "email"), ["email", "3", "0", "4", "1", "1h", "3", "6h", "1"])
        self.assertEqual(row(queues, "webhook"), ["webhook", "0", "0", "1", "0", "1h", "1", "6h",
                                                  "0"])

        held = section(res.stdout, "Held back in delay queues")
        text = "\n".join(held)
        self.assertRegex(text, r"email\s+quiet hours\s+3\s+" + re.escape(
            f"{min(quiet):%Y-%m-%d %H:%M:%S} UTC (in 9 h ") + r"[0-9]+ min\)\s+" +
            re.escape(f"{max(quiet):%Y-%m-%d %H:%M:%S}"))
        self.assertRegex(text, r"email\s+scheduled \(not_before\)\s+1\s+" +
                         re.escape(f"{scheduled:%Y-%m-%d %H:%M:%S} UTC"))
        self.assertRegex(text, r"webhook\s+retry after a failure\s+1\s+" +
                         re.escape(f"{retry:%Y-%m-%d %H:%M:%S} UTC (in ") + r"(19|20) min\)")
        self.assertIn(f"next release: webhook/signup (webhook, retry after a failure) at "
                      f"{retry:%Y-%m-%d %H:%M:%S} UTC", text)

        # Looking did not change the delay queue: the same postings in the same order.
        taken = mgmt.take_all(email + ".delay.1h", 10)
        self.assertEqual([m["properties"]["headers"]["x-deliver-at"] for m in taken],
                         [utc(at) for at in quiet])

        lag = section(res.stdout, "Kafka consumer lag")
        self.assertIn(f"group {group}, topic {topic}", lag[0])
        self.assertEqual(row(lag, str(partition)), [str(partition), "1", "3", "2"])
        for p in range(4):
            if p != partition:
                self.assertEqual(row(lag, str(p)), [str(p), "none", "0", "0"])
        self.assertIn("  total lag 2", lag)

        urls = section(res.stdout, "URLs")
        self.assertEqual(row(urls, "inbox"), ["inbox", env["INBOX_URL"]])
        self.assertIn(env["KAFKA_BOOTSTRAP_SERVERS"], "\n".join(urls))
        self.assertIn(env["AUTH_URL"], "\n".join(urls))

        # Without the management API (a test stack as it starts): rabbitmqctl, depths only.
        res, took = run_status(STACK, **settings)
        print(f"status.py with rabbitmqctl took {took:.2f} s")
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        queues = section(res.stdout, "Queues")
        self.assertIn("rabbitmqctl", queues[0])
        self.assertEqual(row(queues, "email"), ["email", "3", "0", "1", "1", "1h", "0", "6h", "1"])
        held = section(res.stdout, "Held back in delay queues")
        self.assertIn("2 postings; reasons and release times need RabbitMQ's management API",
                      "\n".join(held))

        for q in mgmt.call("GET", "/queues/%2f?columns=name"):
            if q["name"].startswith(exchange + "."):
                mgmt.call("DELETE", f"/queues/%2f/{q['name']}")


def commit_offset(bootstrap, group, topic, offset):
    """The group's committed offset becomes `offset` on the one partition of the topic that holds
    messages, by a real client: kcat joins the group, reads that many messages from the start
    and commits on leaving."""
    subprocess.run(["kcat", "-C", "-q", "-b", bootstrap, "-G", group, "-X",
                    "auto.offset.reset=earliest", "-c", str(offset), topic],
                   capture_output=True, text=True, timeout=60, check=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", required=True)
    args, rest = parser.parse_known_args()
    STACK = os.path.realpath(args.stack)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
