#!/usr/bin/env python3
"""Serving benchmarks for the disaggregated path (issue #3's figures), against real
deployments started with `tessera serve` on this host:

  1. TTFT added by the prefill-to-decode handoff at low load: the same requests, one at a
     time, through 1 prefill + 1 decode worker and through 1 colocated worker, each worker with
     the same number of compute threads. Also the time to the second token, which is the first
     one a disaggregated request gets from its decode worker (so it includes the KV handoff).
  2. Router overhead per request: the router's own histogram (tessera_router_overhead_seconds:
     time per request not spent waiting on workers), under sequential and concurrent load.

Run: .deps/client-venv/bin/python bench/serving/handoff_bench.py [--requests 20] [--json]
(scripts/setup_clients makes that venv; the tessera binary is build/engine/main/tessera.)
"""

import argparse
import concurrent.futures
import json
import os
import random
import statistics
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


def quantile_from_histogram(deployment, name, q):
    """histogram_quantile() over the router's /metrics, as Prometheus computes it."""
    import urllib.request
    text = urllib.request.urlopen("http://%s/metrics" % deployment.http_address).read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20, help="per layout and prompt length")
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="compute threads per worker")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    layouts = {"disaggregated": dict(prefill=1, decode=1, both=0),
               "colocated": dict(prefill=0, decode=0, both=1)}
    samples = {(layout, n): {"ttft": [], "second": [], "total": []}
               for layout in layouts for n in lengths}
    overhead = {}
    # Alternate the layouts in rounds so the host's drift hits both alike.
    rounds = 2
    per_round = max(1, args.requests // rounds)
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
                if layout == "disaggregated" and round_index == rounds - 1:
                    # Router overhead: short requests, sequential then 16 at a time.
                    for i in range(200):
                        d.generate(tokens=prompt_tokens(8, 5000 + i), max_tokens=4,
                                   ignore_eos=True)
                    with concurrent.futures.ThreadPoolExecutor(16) as pool:
                        list(pool.map(lambda i: d.generate(tokens=prompt_tokens(8, 9000 + i),
                                                           max_tokens=4, ignore_eos=True),
                                      range(200)))
                    for q in (0.5, 0.9, 0.99):
                        value, count = quantile_from_histogram(
                            d, "tessera_router_overhead_seconds", q)
                        overhead["p%d_us" % round(q * 100)] = value * 1e6
                        overhead["requests"] = count

    results = {"ttft": [], "router_overhead": overhead}
    for n in lengths:
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
    print("Low load, one request at a time, %d per layout and length, %d thread(s) per worker "
          "(medians, ms)" % (per_round * rounds, args.threads))
    print("%7s | %10s %10s %8s | %12s %12s %8s" % ("prompt", "TTFT 1P1D", "colocated", "added",
                                                  "2nd tok 1P1D", "colocated", "added"))
    for row in results["ttft"]:
        print("%7d | %10.1f %10.1f %7.1f%% | %12.1f %12.1f %7.1f%%" % (
            row["prompt_tokens"], row["disaggregated_ttft_ms"], row["colocated_ttft_ms"],
            row["ttft_added_pct"], row["disaggregated_second_ms"], row["colocated_second_ms"],
            row["second_token_added_pct"]))
    print("Router overhead per request (%d requests): p50 %.0f us, p90 %.0f us, p99 %.0f us" % (
        overhead["requests"], overhead["p50_us"], overhead["p90_us"], overhead["p99_us"]))


if __name__ == "__main__":
    main()
