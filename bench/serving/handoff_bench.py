#!/usr/bin/env python3
"""Serving benchmarks for the disaggregated path (issue #3's figures), against real
deployments started with `tessera serve` on this host:

  1. TTFT added by the prefill-to-decode handoff at low load: the same requests, one at a
     time, through 1 prefill + 1 decode worker and through 1 colocated worker, each worker with
     the same number of compute threads. Also the time to the second token, which is the first
     one a disaggregated request gets from its decode worker (so it includes the KV handoff).
  2. Router overhead per request, from the router's own histograms, for short requests one at
     a time and 16 at a time: tessera_router_overhead_seconds (the latency the router adds:
     arrival until the first worker call is on its way, plus the last worker event until it is
     handed to the client's transport) and tessera_router_busy_seconds (all router time on the
     request not spent waiting on workers, including forwarding every token).

Run: .deps/client-venv/bin/python bench/serving/handoff_bench.py [--requests 20] [--json]
(scripts/setup_clients makes that venv; the tessera binary is build/engine/main/tessera.)
"""

import argparse
import concurrent.futures
import json
import os
import random
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "serving"))
import harness  # noqa: E402  (the deployment launcher the serving tests use)


def prompt_tokens(length, seed):
    rng = random.Random(seed)
    return [rng.randrange(1000, 40000) for _ in range(length)]


def timed_request(deployment, tokens, max_tokens):
    """Client-side times (ms) to the first and second generated token, and to the end."""
    start = time.perf_counter()
    marks = []
    count = 0
    for response in deployment.inference.Generate(
            deployment.request(tokens=tokens, max_tokens=max_tokens, ignore_eos=True), timeout=120):
        now = time.perf_counter()
        for _ in response.token_ids:
            count += 1
            if count <= 2:
                marks.append((now - start) * 1000)
    return marks[0], marks[1], (time.perf_counter() - start) * 1000


def histogram_buckets(deployment, name):
    """The cumulative buckets of one histogram on the router's /metrics."""
    import urllib.request
    text = urllib.request.urlopen("http://%s/metrics" % deployment.http_address).read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    return buckets


def quantile_between(before, after, q):
    """histogram_quantile() over the observations made between two bucket snapshots."""
    buckets = [(bound, count - old) for (bound, count), (_, old) in zip(after, before)]
    return quantile_of_buckets(buckets, q)


def quantile_from_histogram(deployment, name, q):
    """histogram_quantile() over the router's /metrics, as Prometheus computes it."""
    return quantile_of_buckets(histogram_buckets(deployment, name), q)


def quantile_of_buckets(buckets, q):
    total = buckets[-1][1]
    if total == 0:
        return float("nan"), 0
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return previous_bound, int(total)
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / max(
                count - previous_count, 1e-9), int(total)
        previous_bound, previous_count = bound, count
    return float("nan"), int(total)


OVERHEAD_METRICS = ("tessera_router_overhead_seconds", "tessera_router_busy_seconds")


def router_cpu_seconds(deployment):
    """CPU time (user + system) the deployment's router process has used so far (Linux)."""
    pids = subprocess.run(["pgrep", "-P", str(deployment.process.pid), "-f", "tessera router"],
                          capture_output=True, text=True).stdout.split()
    with open("/proc/%s/stat" % pids[0]) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_router_overhead(args):
    """Both router histograms over short requests, one at a time and then 16 at a time, in the
    1P1D layout: {metric: {"sequential"|"concurrent": {"p50_us", "p90_us", "p99_us",
    "requests"}}}, plus {"router_cpu_us_per_request": {"sequential"|"concurrent": us}}: all
    the router process's CPU time (every thread, the kernel's part included) per request."""
    extra = ["--worker-threads", str(args.threads)]
    if args.nice:
        extra.append("--worker-flag=--nice=%d" % args.nice)
    if args.router_realtime:
        extra.append("--router-flag=--realtime-priority=%d" % args.router_realtime)
    extra += ["--router-flag=%s" % flag for flag in args.router_flag]
    requests = args.overhead_requests
    result = {metric: {} for metric in OVERHEAD_METRICS}
    cpu = []
    with harness.Deployment(prefill=1, decode=1, extra=extra) as d:
        for i in range(20):  # Warm-up.
            d.generate(tokens=prompt_tokens(8, i), max_tokens=4, ignore_eos=True)
        snapshots = [{m: histogram_buckets(d, m) for m in OVERHEAD_METRICS}]
        cpu.append(router_cpu_seconds(d))
        for i in range(requests):
            d.generate(tokens=prompt_tokens(8, 5000 + i), max_tokens=4, ignore_eos=True)
        cpu.append(router_cpu_seconds(d))
        snapshots.append({m: histogram_buckets(d, m) for m in OVERHEAD_METRICS})
        cpu.append(router_cpu_seconds(d))
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: d.generate(tokens=prompt_tokens(8, 9000 + i), max_tokens=4,
                                               ignore_eos=True), range(requests)))
        cpu.append(router_cpu_seconds(d))
        snapshots.append({m: histogram_buckets(d, m) for m in OVERHEAD_METRICS})
    result["router_cpu_us_per_request"] = {
        "sequential": (cpu[1] - cpu[0]) / requests * 1e6,
        "concurrent": (cpu[3] - cpu[2]) / requests * 1e6}
    for metric in OVERHEAD_METRICS:
        for run, (before, after) in (("sequential", (snapshots[0], snapshots[1])),
                                     ("concurrent", (snapshots[1], snapshots[2]))):
            figures = {}
            for q in (0.5, 0.9, 0.99):
                value, count = quantile_between(before[metric], after[metric], q)
                figures["p%d_us" % round(q * 100)] = value * 1e6
                figures["requests"] = count
            result[metric][run] = figures
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20, help="per layout and prompt length")
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="compute threads per worker")
    parser.add_argument("--nice", type=int, default=0,
                        help="worker niceness (tessera worker --nice) for the router overhead runs")
    parser.add_argument("--router-realtime", type=int, default=0,
                        help="router SCHED_FIFO priority (tessera router --realtime-priority) "
                             "for the router overhead runs")
    parser.add_argument("--overhead-requests", type=int, default=1000,
                        help="requests for each router overhead run (one at a time, 16 at a time)")
    parser.add_argument("--router-flag", action="append", default=[],
                        help="extra tessera router flag for the router overhead runs, e.g. "
                             "--router-flag=--no-standby-prefill-streams (repeatable)")
    parser.add_argument("--overhead-only", action="store_true",
                        help="only the router overhead measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    layouts = {"disaggregated": dict(prefill=1, decode=1, both=0),
               "colocated": dict(prefill=0, decode=0, both=1)}
    samples = {(layout, n): {"ttft": [], "second": [], "total": []}
               for layout in layouts for n in lengths}
    overhead = measure_router_overhead(args)
    # Alternate the layouts in rounds so the host's drift hits both alike.
    rounds = 0 if args.overhead_only else 2
    per_round = max(1, args.requests // 2)
    for round_index in range(rounds):
        for layout, shape in layouts.items():
            extra = ["--worker-threads", str(args.threads)]
            with harness.Deployment(extra=extra, **shape) as d:
                for n in lengths:  # Warm-up.
                    timed_request(d, prompt_tokens(n, 0), args.max_tokens)
                for i in range(per_round):
                    for n in lengths:
                        ttft, second, total = timed_request(
                            d, prompt_tokens(n, 1 + i + round_index * per_round), args.max_tokens)
                        s = samples[(layout, n)]
                        s["ttft"].append(ttft)
                        s["second"].append(second)
                        s["total"].append(total)

    results = {"ttft": [], "router_overhead": overhead}
    for n in (lengths if rounds else []):
        dis, col = samples[("disaggregated", n)], samples[("colocated", n)]
        row = {"prompt_tokens": n}
        for key in ("ttft", "second", "total"):
            row["disaggregated_%s_ms" % key] = statistics.median(dis[key])
            row["colocated_%s_ms" % key] = statistics.median(col[key])
        row["ttft_added_pct"] = 100 * (row["disaggregated_ttft_ms"] / row["colocated_ttft_ms"] - 1)
        row["second_token_added_pct"] = 100 * (
            row["disaggregated_second_ms"] / row["colocated_second_ms"] - 1)
        results["ttft"].append(row)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("Router overhead, 1 prefill + 1 decode worker (worker niceness %d, router real-time "
          "priority %d%s), 4-token requests:" % (
              args.nice, args.router_realtime,
              "".join(", " + flag for flag in args.router_flag)))
    for metric in OVERHEAD_METRICS:
        for run, figures in overhead[metric].items():
            print("  %-32s %-10s n=%d p50 %5.0f us  p90 %5.0f us  p99 %5.0f us" % (
                metric, run, figures["requests"], figures["p50_us"], figures["p90_us"],
                figures["p99_us"]))
    print("  router CPU per request (all threads): one at a time %.0f us, 16 in flight %.0f us"
          % (overhead["router_cpu_us_per_request"]["sequential"],
             overhead["router_cpu_us_per_request"]["concurrent"]))
    if not rounds:
        return
    print("Low load, one request at a time, %d per layout and length, %d thread(s) per worker "
          "(medians, ms)" % (per_round * rounds, args.threads))
    print("%7s | %10s %10s %8s | %12s %12s %8s" % ("prompt", "TTFT 1P1D", "colocated", "added",
                                                  "2nd tok 1P1D", "colocated", "added"))
    for row in results["ttft"]:
        print("%7d | %10.1f %10.1f %7.1f%% | %12.1f %12.1f %7.1f%%" % (
            row["prompt_tokens"], row["disaggregated_ttft_ms"], row["colocated_ttft_ms"],
            row["ttft_added_pct"], row["disaggregated_second_ms"], row["colocated_second_ms"],
            row["second_token_added_pct"]))


if __name__ == "__main__":
    main()
