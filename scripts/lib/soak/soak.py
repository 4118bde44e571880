"""Soak run: wrk against the gateway for a bounded time while the simulated platforms inject faults.

Starts `profile-jobs-gateway simulate` and `profile-jobs-gateway serve` as separate processes (so the gateway's
memory is measured alone), drives mixed traffic with wrk and scripts/lib/soak/traffic.lua, switches faults on and
off on both simulators, samples the gateway's resident memory, threads and open descriptors, then stops the
gateway with SIGTERM. It fails when the gateway crashed, a connection hung (wrk timeouts or read errors), an
answer was malformed or had an unexpected status, memory grew from the first window to the last, the gateway
did not exit 0, or the audit trail holds a deletion without outcome.

Usage: soak.py BINARY SECONDS REPORT_DIR
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# 429 is the platform's rate limit passed on, the others the gateway's answers to faults and to the traffic's own
# unknown ids and AWS removals.
EXPECTED_STATUSES = {200, 201, 204, 400, 404, 422, 429, 501, 502, 503, 504}
CONNECTIONS = 64
# Memory may settle a little after the first window (caches, connection pools, allocator arenas); more than this
# is growth.
MEMORY_SLACK_RATIO = 0.10
MEMORY_SLACK_KIB = 2048


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.status, answer.read()


def post_json(url, document):
    request = urllib.request.Request(
        url, data=json.dumps(document).encode(), method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.status


def delete(url):
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=5) as answer:
        return answer.status


def process_facts(pid):
    """Resident memory in KiB, threads and open descriptors of a live process."""
    facts = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                facts["rss_kib"] = int(line.split()[1])
            elif line.startswith("Threads:"):
                facts["threads"] = int(line.split()[1])
    facts["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return facts


FAULTS = [
    {"fault": "status", "status": 503, "retryAfter": "1", "times": 40},
    {"fault": "status", "status": 500, "times": 40},
    {"fault": "status", "status": 429, "retryAfter": "1", "times": 40},
    {"fault": "slow", "seconds": 3, "times": 20},
    {"fault": "malformed-json", "times": 40},
    {"fault": "empty-body", "times": 40},
    {"fault": "html-page", "status": 502, "times": 40},
]


def inject_faults(simulators, stop, log):
    """Every two seconds a random fault on a random simulator; every fourth turn both are cleared."""
    rng = random.Random(20261204)
    turn = 0
    while not stop.wait(2):
        turn += 1
        try:
            if turn % 4 == 0:
                for base in simulators:
                    delete(base + "/_simulator/faults")
                log.append("cleared")
                continue
            base = rng.choice(simulators)
            fault = rng.choice(FAULTS)
            post_json(base + "/_simulator/faults", fault)
            log.append(fault["fault"])
        except OSError as error:
            log.append(f"switch failed: {error}")


def sample(pid, stop, samples, started):
    while not stop.wait(2):
        try:
            facts = process_facts(pid)
        except OSError:
            return
        facts["t"] = round(time.monotonic() - started, 1)
        samples.append(facts)


def window_mean(samples, low, high, key):
    values = [s[key] for s in samples if low <= s["t"] < high]
    return sum(values) / len(values) if values else None


def main():
    binary, seconds, report_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(report_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="soak-")
    failures = []

    simulate = subprocess.Popen([binary, "simulate"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addresses = json.loads(simulate.stdout.readline())
    simulators = [addresses["azure"], addresses["aws"]]

    port = free_port()
    audit_file = os.path.join(work, "audit.jsonl")
    configuration = {
        "listen": {"host": "127.0.0.1", "port": port},
        "upstream": {"connectTimeoutSeconds": 1, "timeoutSeconds": 2,
                     "circuitBreaker": {"failures": 20, "openSeconds": 1}},
        "shutdown": {"readinessDelaySeconds": 0},
        "audit": {"file": audit_file},
        "organizations": {
            addresses["organizations"]["azure"]: {
                "cloud": "azure", "baseURL": addresses["azure"],
                "sandboxes": {"prod": "8129954b-fa83-43ba-a995-4bfa8373ba2b"}},
            addresses["organizations"]["aws"]: {"cloud": "aws", "baseURL": addresses["aws"]},
        },
    }
    config_path = os.path.join(work, "gateway.json")
    with open(config_path, "w") as file:
        json.dump(configuration, file)

    gateway_log = open(os.path.join(report_dir, "gateway.log"), "w")
    gateway = subprocess.Popen([binary, "serve", "--config", config_path], stdout=gateway_log, stderr=gateway_log)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if get(base + "/healthz")[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    else:
        failures.append("the gateway did not start")

    stop = threading.Event()
    fault_log, samples = [], []
    started = time.monotonic()
    threads = [
        threading.Thread(target=inject_faults, args=(simulators, stop, fault_log), daemon=True),
        threading.Thread(target=sample, args=(gateway.pid, stop, samples, started), daemon=True),
    ]
    for thread in threads:
        thread.start()

    lua = os.path.join(os.path.dirname(os.path.abspath(__file__)), "traffic.lua")
    wrk = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", lua, base],
        capture_output=True, text=True, timeout=seconds + 120)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    for simulator in simulators:
        try:
            delete(simulator + "/_simulator/faults")
        except OSError:
            pass

    summary_lines = [line for line in wrk.stdout.splitlines() if line.startswith("SOAK ")]
    if wrk.returncode != 0 or not summary_lines:
        failures.append(f"wrk failed ({wrk.returncode}): {wrk.stderr.strip()[:500]}")
        summary = {"requests": 0, "seconds": 0, "statuses": {}, "malformed": 0, "examples": [],
                   "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
                   "latency": {"p50": 0, "p99": 0, "max": 0}}
    else:
        summary = json.loads(summary_lines[-1][len("SOAK "):])

    alive = gateway.poll() is None
    if not alive:
        failures.append(f"the gateway died during the run (exit {gateway.returncode})")
    else:
        try:
            status, _ = get(base + "/healthz")
            if status != 200:
                failures.append(f"/healthz answered {status} after the run")
        except OSError as error:
            failures.append(f"/healthz did not answer after the run: {error}")
    final = process_facts(gateway.pid) if alive else {}

    errors = summary["errors"]
    if errors["timeout"] or errors["read"] or errors["connect"] or errors["write"]:
        failures.append(f"connections failed or hung: {errors}")
    if summary["malformed"]:
        failures.append(f"{summary['malformed']} malformed answers, for example {summary['examples']}")
    unexpected = {status: count for status, count in summary["statuses"].items()
                  if int(status) not in EXPECTED_STATUSES}
    if unexpected:
        failures.append(f"unexpected statuses: {unexpected}")

    # Memory: the first window against the last, a minute each on runs of three minutes or more.
    window = 60 if seconds >= 180 else seconds / 3
    first = window_mean(samples, 0, window, "rss_kib")
    last = window_mean(samples, seconds - window, seconds + 1, "rss_kib")
    peak = max((s["rss_kib"] for s in samples), default=0)
    if first is None or last is None:
        failures.append("too few memory samples")
    elif last > first * (1 + MEMORY_SLACK_RATIO) + MEMORY_SLACK_KIB:
        failures.append(f"memory grew: {first / 1024:.1f} MiB in the first window, {last / 1024:.1f} MiB in the last")

    gateway.send_signal(signal.SIGTERM)
    try:
        exit_code = gateway.wait(timeout=60)
    except subprocess.TimeoutExpired:
        gateway.kill()
        exit_code = "killed after 60 s"
    if exit_code != 0:
        failures.append(f"the gateway exited {exit_code} on SIGTERM")
    simulate.send_signal(signal.SIGTERM)
    simulate.wait(timeout=30)

    # Every deletion's intent has its outcome.
    intents, outcomes = set(), set()
    with open(audit_file) as trail:
        for line in trail:
            record = json.loads(line)
            (intents if record["event"] == "intent" else outcomes).add(record["id"])
    orphans = intents - outcomes
    if orphans:
        failures.append(f"{len(orphans)} deletions without outcome in the audit trail")

    report = {
        "seconds": seconds, "connections": CONNECTIONS, "requests": summary["requests"],
        "requests_per_second": round(summary["requests"] / summary["seconds"], 1) if summary["seconds"] else 0,
        "statuses": dict(sorted(summary["statuses"].items())), "malformed": summary["malformed"],
        "socket_errors": errors, "latency_seconds": summary["latency"],
        "rss_mib": {"first_window_mean": round((first or 0) / 1024, 1), "last_window_mean": round((last or 0) / 1024, 1),
                    "peak": round(peak / 1024, 1), "window_seconds": window},
        "threads_end": final.get("threads"), "fds_end": final.get("fds"),
        "faults_switched": len([f for f in fault_log if f != "cleared"]),
        "audit": {"intents": len(intents), "outcomes": len(outcomes), "without_outcome": len(orphans)},
        "gateway_exit": exit_code, "failures": failures,
    }
    with open(os.path.join(report_dir, "report.json"), "w") as file:
        json.dump({**report, "samples": samples}, file, indent=1)
    print(json.dumps(report, indent=1))
    if failures:
        print("soak: FAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"soak: passed ({summary['requests']} requests in {seconds} s, report in {report_dir}/report.json)")


if __name__ == "__main__":
    main()
