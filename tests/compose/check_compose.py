#!/usr/bin/env python3
"""Checks docker-compose.yml and the Dockerfile without a Docker engine.

    check_compose.py [--source DIR] [--bin-dir DIR]

What can be known here is checked: the compose file parses and names the expected services,
pinned images and files that exist; the services that must survive failures have healthchecks,
restart policies and start conditions; the worker can be scaled; Prometheus scrapes every
replica; the worker's delivery ledger (Redis) keeps an append-only file on a volume, is healthy
before the worker starts and is the one LEDGER_URL names; the Dockerfile's build stage installs
exactly the -dev packages of scripts/install-deps.sh; and, when natively built binaries are at
hand (--bin-dir), the runtime stage installs the packages of every shared library they link. Prints each problem; exit status 1
when there is one.
"""

import argparse
import fnmatch
import os
import re
import shlex
import subprocess
import sys

try:
    import yaml
except ImportError:
    sys.stderr.write("check_compose: PyYAML is missing (Debian python3-yaml): "
                     "run scripts/install-deps.sh\n")
    sys.exit(1)

SERVICES = ["kafka", "rabbitmq", "redis", "mailhog", "prometheus", "auth",
            "etl_notifications", "worker_notifications"]
# The services of the pipeline and their metrics ports (the services' METRICS_PORT defaults).
PIPELINE = {"etl_notifications": 9464, "worker_notifications": 9465}
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}
# The worker's delivery ledger: its service, and the address the worker must be given.
LEDGER_SERVICE = "redis"
LEDGER_URL = "redis://redis:6379/0"
# Redis options the ledger needs (documentation/operations.md): a restart forgets at most the
# last second of claims and marks.
LEDGER_OPTIONS = {"--appendonly": "yes", "--appendfsync": "everysec"}
# Present in debian:bookworm-slim already (libc6 is essential; apt needs the C++ runtime).
BASE_IMAGE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1"}

problems = []


def problem(text):
    problems.append(text)


# --------------------------------------------------------------------------------------------
# Dockerfile and install-deps.sh


def dockerfile_stages(path):
    """{stage name: [instruction lines]}, continuation lines joined, comments dropped."""
    stages, current, logical = {}, None, ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not logical and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                logical += line[:-1] + " "
                continue
            logical += line
            text, logical = logical.strip(), ""
            if not text:
                continue
            words = text.split()
            if words[0].upper() == "FROM":
                name = words[3] if len(words) >= 4 and words[2].upper() == "AS" else words[1]
                current = name
                stages[current] = [text]
            elif current is not None:
                stages[current].append(text)
    return stages


def apt_packages(instructions):
    """Package names of every `apt-get install` in RUN instructions."""
    out = set()
    for text in instructions:
        if not text.upper().startswith("RUN "):
            continue
        for command in re.split(r"&&|;", text[4:]):
            words = shlex.split(command)
            if len(words) >= 2 and words[0] == "apt-get" and "install" in words:
                out.update(w for w in words[words.index("install") + 1:] if not w.startswith("-"))
    return out


def install_deps_packages(path):
    with open(path) as f:
        text = f.read()
    m = re.search(r"^packages=\((.*?)^\)", text, re.S | re.M)
    if not m:
        problem(f"{path}: no packages=( ... ) list")
        return set()
    body = "\n".join(line.split("#", 1)[0] for line in m.group(1).splitlines())
    return {w for w in shlex.split(body) if not w.startswith("$")}


def copy_sources(instructions):
    """Repository paths the stage COPYs (not those copied from another stage)."""
    out = []
    for text in instructions:
        words = text.split()
        if words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        out.extend(args[:-1])
    return out


def image_binaries(instructions):
    """Names under /app/bin that the runtime stage provides."""
    out = set()
    for text in instructions:
        words = text.split()
        if words[0].upper() != "COPY":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        dest = args[-1]
        if dest.rstrip("/") == "/app/bin":
            out.update(os.path.basename(s.rstrip("/")) for s in args[:-1])
        elif dest.startswith("/app/bin/"):
            out.add(os.path.basename(dest))
    return out


# --------------------------------------------------------------------------------------------
# Shared libraries of the native build


def dpkg_owner(path):
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        if p.startswith("/usr/"):
            candidates.append(p[4:])
        else:
            candidates.append("/usr" + p)
    for p in candidates:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].strip()
    return None


def needed_packages(binary):
    """{package: soname} of the libraries the binary links directly (not via other libraries)."""
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True)
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dyn.stdout))
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd.stdout, re.M))
    out = {}
    for soname in needed:
        if soname not in resolved:
            problem(f"{binary}: {soname} does not resolve")
            continue
        owner = dpkg_owner(resolved[soname])
        if owner is None:
            problem(f"{binary}: {resolved[soname]} belongs to no Debian package")
            continue
        out[owner] = soname
    return out


def dependency_closure(packages):
    """The packages and everything they depend on, as installed on this machine."""
    seen, todo = set(), list(packages)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        r = subprocess.run(["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}", p],
                           capture_output=True, text=True)
        if r.returncode != 0:
            continue
        for alternative in r.stdout.split(","):
            name = alternative.split("|")[0].strip().split(" ")[0].split(":")[0]
            if name:
                todo.append(name)
    return seen


def check_runtime_libraries(runtime, bin_dir, binaries):
    present = [b for b in sorted(binaries) if os.access(os.path.join(bin_dir, b), os.X_OK)]
    missing = sorted(set(binaries) - set(present))
    if missing:
        print(f"check_compose: not built in {bin_dir}, their libraries not checked: "
              f"{' '.join(missing)}")
    if not present:
        return
    available = dependency_closure(runtime | BASE_IMAGE_PACKAGES)
    used = set()
    for b in present:
        for package, soname in needed_packages(os.path.join(bin_dir, b)).items():
            used.add(package)
            if package not in available:
                problem(f"Dockerfile runtime stage: {b} links {soname} from {package}, "
                        f"which the stage does not install")
    if not missing:
        for package in sorted(runtime - dependency_closure(used) - {"tzdata", "ca-certificates"}):
            print(f"check_compose: note: runtime package {package} is linked by none of "
                  f"{' '.join(present)}")


# --------------------------------------------------------------------------------------------
# docker-compose.yml


def image_pinned(image):
    if "@sha256:" in image:
        return True
    name_tag = image.rsplit("/", 1)[-1]
    return ":" in name_tag and name_tag.split(":", 1)[1] not in ("", "latest")


def host_ports(service):
    out = []
    for p in service.get("ports", []) or []:
        if isinstance(p, dict):
            if p.get("published"):
                out.append(str(p["published"]))
        else:
            parts = str(p).split(":")
            if len(parts) >= 2:
                out.append(parts[-2])
    return out


def healthcheck_command(service):
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
        return test[1:]
    if isinstance(test, str):
        return shlex.split(test)
    return []


def check_compose(source, compose, binaries):
    services = compose.get("services") or {}
    for name in SERVICES:
        if name not in services:
            problem(f"docker-compose.yml: no service {name}")

    for name, s in services.items():
        where = f"docker-compose.yml: {name}"
        build = s.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile",
                                                                               "Dockerfile")
            path = os.path.join(source, context, dockerfile)
            if not os.path.isfile(path):
                problem(f"{where}: build names {os.path.relpath(path, source)}, which is missing")
        image = s.get("image")
        if image is None and build is None:
            problem(f"{where}: neither image nor build")
        if image is not None and not image_pinned(image):
            problem(f"{where}: image {image} is not pinned to a tag")
        for volume in s.get("volumes", []) or []:
            host = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if host and (host.startswith(".") or host.startswith("/")):
                if not os.path.exists(os.path.join(source, host)):
                    problem(f"{where}: mounts {host}, which is missing")
            elif host and host not in (compose.get("volumes") or {}):
                problem(f"{where}: mounts the named volume {host}, which the top-level volumes "
                        "do not declare")
        depends = s.get("depends_on") or {}
        for other in depends:
            if other not in services:
                problem(f"{where}: depends on unknown service {other}")
        # The pipeline's image provides /app/bin/<binary> only.
        if build is not None:
            for cmd in (s.get("command") or [])[:1] + healthcheck_command(s)[:1]:
                if cmd.startswith("/app/bin/") and cmd[len("/app/bin/"):] not in binaries:
                    problem(f"{where}: runs {cmd}, which the image does not contain")

    for name, port in PIPELINE.items():
        s = services.get(name)
        if s is None:
            continue
        where = f"docker-compose.yml: {name}"
        if not s.get("healthcheck"):
            problem(f"{where}: no healthcheck")
        elif not any(str(port) == w for w in healthcheck_command(s)) or \
                "/readyz" not in healthcheck_command(s):
            problem(f"{where}: the healthcheck does not ask /readyz on port {port}")
        if s.get("restart") not in RESTART_POLICIES:
            problem(f"{where}: restart policy {s.get('restart')!r}, not one of "
                    f"{sorted(RESTART_POLICIES)}")
        depends = s.get("depends_on")
        if not isinstance(depends, dict) or not depends:
            problem(f"{where}: depends_on without conditions")
        else:
            for other, spec in depends.items():
                if not isinstance(spec, dict) or "condition" not in spec:
                    problem(f"{where}: depends_on {other} without a condition")
        env = s.get("environment") or {}
        if str(env.get("METRICS_PORT")) != str(port):
            problem(f"{where}: METRICS_PORT is {env.get('METRICS_PORT')!r}, not {port}")

    worker = services.get("worker_notifications") or {}
    if host_ports(worker):
        problem("docker-compose.yml: worker_notifications publishes host port(s) "
                f"{host_ports(worker)}: `--scale worker_notifications=3` would clash")
    if "container_name" in worker:
        problem("docker-compose.yml: worker_notifications has a container_name: it cannot scale")


def volume_target(volume):
    if isinstance(volume, dict):
        return volume.get("target")
    parts = str(volume).split(":")
    return parts[1] if len(parts) >= 2 else parts[0]


def command_words(service):
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command]


def check_ledger(compose):
    services = compose.get("services") or {}
    redis = services.get(LEDGER_SERVICE)
    if redis is None:
        return  # reported with the services
    where = f"docker-compose.yml: {LEDGER_SERVICE}"
    words = command_words(redis)
    for option, value in LEDGER_OPTIONS.items():
        if option not in words or words.index(option) + 1 >= len(words) or \
                words[words.index(option) + 1] != value:
            problem(f"{where}: the command does not say {option} {value}")
    if "/data" not in (volume_target(v) for v in redis.get("volumes", []) or []):
        problem(f"{where}: no volume at /data: the append-only file would go with the container")
    check = " ".join(healthcheck_command(redis))
    if "redis-cli" not in check or "ping" not in check.lower():
        problem(f"{where}: the healthcheck does not ask redis-cli ping")
    if redis.get("restart") not in RESTART_POLICIES:
        problem(f"{where}: restart policy {redis.get('restart')!r}, not one of "
                f"{sorted(RESTART_POLICIES)}")

    worker = services.get("worker_notifications") or {}
    env = worker.get("environment") or {}
    if env.get("LEDGER_URL") != LEDGER_URL:
        problem(f"docker-compose.yml: worker_notifications: LEDGER_URL is "
                f"{env.get('LEDGER_URL')!r}, not {LEDGER_URL}")
    depends = worker.get("depends_on") or {}
    spec = depends.get(LEDGER_SERVICE) if isinstance(depends, dict) else None
    if not isinstance(spec, dict) or spec.get("condition") != "service_healthy":
        problem(f"docker-compose.yml: worker_notifications does not wait for {LEDGER_SERVICE} "
                "to be healthy (depends_on condition service_healthy)")


def check_prometheus(source, compose):
    prom = (compose.get("services") or {}).get("prometheus") or {}
    config = None
    for volume in prom.get("volumes", []) or []:
        host, _, target = str(volume).partition(":")
        if target.split(":")[0] == "/etc/prometheus/prometheus.yml":
            config = os.path.join(source, host)
    if config is None:
        problem("docker-compose.yml: prometheus mounts no /etc/prometheus/prometheus.yml")
        return
    if not os.path.isfile(config):
        return  # reported with the volumes
    with open(config) as f:
        scrape = yaml.safe_load(f).get("scrape_configs") or []
    targets = set()
    for job in scrape:
        for sd in job.get("dns_sd_configs") or []:
            for name in sd.get("names") or []:
                targets.add((name, sd.get("port")))
        for sc in job.get("static_configs") or []:
            for t in sc.get("targets") or []:
                host, _, port = t.rpartition(":")
                targets.add((host, int(port)))
    for name, port in PIPELINE.items():
        if (name, port) not in targets:
            problem(f"{os.path.relpath(config, source)}: does not scrape {name}:{port}")


def check_build_context(source, build):
    """Every folder the top-level CMakeLists.txt adds reaches the build stage."""
    with open(os.path.join(source, "CMakeLists.txt")) as f:
        folders = re.findall(r"^\s*add_subdirectory\(\s*([\w./-]+)", f.read(), re.M)
    ignored = []
    path = os.path.join(source, ".dockerignore")
    if os.path.isfile(path):
        with open(path) as f:
            ignored = [line.strip().strip("/") for line in f
                       if line.strip() and not line.startswith("#")]
    copied = copy_sources(build)
    whole_tree = "." in copied or "./" in copied
    for folder in folders:
        if not os.path.isdir(os.path.join(source, folder)):
            continue  # CMake itself fails on that, natively too
        if any(fnmatch.fnmatch(folder, pattern) for pattern in ignored):
            problem(f".dockerignore excludes {folder}, which CMakeLists.txt adds")
        elif not whole_tree and folder not in copied:
            problem(f"Dockerfile build stage: does not COPY {folder}, which CMakeLists.txt adds")


def main():
    parser = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--source", default=os.path.normpath(os.path.join(here, "..", "..")))
    parser.add_argument("--bin-dir")
    args = parser.parse_args()
    source = args.source

    with open(os.path.join(source, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    stages = dockerfile_stages(os.path.join(source, "Dockerfile"))
    if set(stages) != {"build", "runtime"}:
        problem(f"Dockerfile: stages {sorted(stages)}, expected build and runtime")
    build, runtime = stages.get("build", []), stages.get("runtime", [])
    for stage in (build, runtime):
        if stage and not stage[0].split()[1].startswith("debian:bookworm-slim"):
            problem(f"Dockerfile: {stage[0]}: not debian:bookworm-slim")
    if not any(t.split()[0].upper() == "USER" and t.split()[1] not in ("root", "0")
               for t in runtime):
        problem("Dockerfile: the runtime stage does not switch to a non-root USER")
    for path in copy_sources(build) + copy_sources(runtime):
        if not os.path.exists(os.path.join(source, path)):
            problem(f"Dockerfile: COPY {path}, which is missing")

    native_dev = {p for p in install_deps_packages(os.path.join(source, "scripts",
                                                                "install-deps.sh"))
                  if p.endswith("-dev")}
    image_dev = {p for p in apt_packages(build) if p.endswith("-dev")}
    for p in sorted(native_dev - image_dev):
        problem(f"Dockerfile build stage: {p} is missing (scripts/install-deps.sh has it)")
    for p in sorted(image_dev - native_dev):
        problem(f"Dockerfile build stage: {p} is not in scripts/install-deps.sh")
    if any(p.endswith("-dev") for p in apt_packages(runtime)):
        problem("Dockerfile runtime stage: installs -dev packages")

    check_build_context(source, build)
    binaries = image_binaries(runtime)
    check_compose(source, compose, binaries)
    check_ledger(compose)
    check_prometheus(source, compose)
    if args.bin_dir:
        pipeline_binaries = binaries - {"ready"}
        check_runtime_libraries(apt_packages(runtime), args.bin_dir, pipeline_binaries)

    for p in problems:
        print(f"check_compose: {p}")
    if not problems:
        print("check_compose: docker-compose.yml and Dockerfile are consistent")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
