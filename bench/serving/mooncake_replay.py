#!/usr/bin/env python3
"""Replays the Mooncake trace (../shared/traces/mooncake_synthetic.jsonl) against `tessera
serve` to measure what the KV-cache manager saves: prefill tokens taken from caches against
the trace's own upper bound, and TTFT with and without caching, routed by load only or by
cached-prefix overlap.

Scaling (the trace's prompts average ~15k tokens; a 135M model on 2 cores serves ~1k tokens/s):
  * each 512-token hash block becomes --tokens-per-block tokens (default 16, i.e. 1/32), the
    same tokens for the same hash id, so prefix sharing is the trace's own;
  * input lengths scale by the same factor and are clipped to the model's context;
  * outputs are clipped to --max-output tokens (EOS ignored);
  * the first --requests requests are replayed open-loop, each at its timestamp times
    --time-scale.

The bound: for each request, the tokens of its leading hash blocks that an earlier request in
the replay already had (whole cache blocks only, and never the prompt's last token, which is
always computed for its logits). Tokens saved are the cached_tokens the server reports.

Run: .deps/client-venv/bin/python bench/serving/mooncake_replay.py [--json]
"""

import argparse
import concurrent.futures
import json
import os
import random
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "serving"))
import harness  # noqa: E402

TRACE = os.path.join(HERE, "..", "..", "..", "shared", "traces", "mooncake_synthetic.jsonl")
CONTEXT = 8192


def load_requests(path, count, tokens_per_block, max_output, cache_block=16):
    rows = []
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            if len(rows) >= count:
                break
            try:
                row = json.loads(line)
                rows.append(row)
            except json.JSONDecodeError as e:
                raise SystemExit("%s:%d: %s" % (path, line_number, e))
    block_tokens = {}

    def tokens_of(hash_id):
        if hash_id not in block_tokens:
            rng = random.Random(hash_id * 7919 + 17)
            block_tokens[hash_id] = [rng.randrange(1000, 40000) for _ in range(tokens_per_block)]
        return block_tokens[hash_id]

    requests, seen, clipped = [], set(), 0
    for row in rows:
        length = max(1, round(row["input_length"] * tokens_per_block / 512))
        if length >= CONTEXT - max_output:
            length = CONTEXT - max_output - 1
            clipped += 1
        prompt = []
        for hash_id in row["hash_ids"]:
            prompt += tokens_of(hash_id)
        prompt = prompt[:length]
        shared = 0
        while shared < len(row["hash_ids"]) and row["hash_ids"][shared] in seen:
            shared += 1
        seen.update(row["hash_ids"])
        bound = min(shared * tokens_per_block, (len(prompt) - 1) // cache_block * cache_block)
        bound = bound // cache_block * cache_block
        requests.append({"at": row["timestamp"] / 1000.0, "prompt": prompt,
                         "output": max(1, min(row["output_length"], max_output)),
                         "bound": bound})
    return requests, clipped


def replay(deployment, requests, time_scale):
    results = [None] * len(requests)
    start = time.perf_counter()

    def one(i):
        r = requests[i]
        delay = start + r["at"] * time_scale - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter()
        first = None
        try:
            for response in deployment.inference.Generate(
                    deployment.request(tokens=r["prompt"], max_tokens=r["output"],
                                       ignore_eos=True), timeout=600):
                if first is None and response.token_ids:
                    first = time.perf_counter()
                last = response
            results[i] = {"ttft_ms": (first - sent) * 1000,
                          "cached": last.usage.cached_tokens, "ok": True}
        except Exception as e:  # noqa: BLE001 (reported, not hidden)
            results[i] = {"ok": False, "error": str(e)[:200], "cached": 0}

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        list(pool.map(one, range(len(requests))))
    return results, time.perf_counter() - start


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trace", default=TRACE)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--tokens-per-block", type=int, default=16)
    parser.add_argument("--max-output", type=int, default=8)
    parser.add_argument("--time-scale", type=float, default=3.0)
    parser.add_argument("--cache-bytes", type=int, default=3 << 30)
    parser.add_argument("--cache-block", type=int, default=16,
                        help="tokens per KV cache block on the workers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    requests, clipped = load_requests(args.trace, args.requests, args.tokens_per_block,
                                      args.max_output, args.cache_block)
    prompt_tokens = sum(len(r["prompt"]) for r in requests)
    bound = sum(r["bound"] for r in requests)
    common = ["--worker-threads", "1", "--worker-flag=--block-size=%d" % args.cache_block]
    runs = {
        "no caching": common + ["--worker-flag=--no-prefix-caching"],
        "caching, load-only routing": common + [
            "--cache", "1", "--cache-bytes", str(args.cache_bytes),
            "--router-flag=--route-overlap-weight=0"],
        "caching, KV-aware routing": common + [
            "--cache", "1", "--cache-bytes", str(args.cache_bytes)],
    }
    report = {"requests": len(requests), "prompt_tokens": prompt_tokens, "bound_tokens": bound,
              "scaling": {"tokens_per_512_token_block": args.tokens_per_block,
                          "max_output": args.max_output, "time_scale": args.time_scale,
                          "cache_block_tokens": args.cache_block,
                          "clipped_to_context": clipped},
              "runs": {}}
    for name, extra in runs.items():
        with harness.Deployment(prefill=2, decode=1, extra=extra) as d:
            results, seconds = replay(d, requests, args.time_scale)
        ok = [r for r in results if r["ok"]]
        saved = sum(r["cached"] for r in ok)
        ttft = [r["ttft_ms"] for r in ok]
        report["runs"][name] = {
            "completed": len(ok), "failed": len(results) - len(ok),
            "tokens_saved": saved, "saved_of_bound": saved / bound if bound else 0.0,
            "ttft_p50_ms": percentile(ttft, 0.5), "ttft_p90_ms": percentile(ttft, 0.9),
            "seconds": seconds,
            "errors": sorted({r["error"] for r in results if not r["ok"]})[:3]}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print("Mooncake replay: %d requests, %d prompt tokens; trace bound %d tokens (%.1f%%)" % (
        len(requests), prompt_tokens, bound, 100.0 * bound / prompt_tokens))
    print("scaling: 512-token blocks -> %d tokens, outputs <= %d, time x%.1f, %d clipped; "
          "KV blocks of %d tokens; 2 prefill + 1 decode workers, 1 thread each" % (
              args.tokens_per_block, args.max_output, args.time_scale, clipped, args.cache_block))
    print("%-28s %9s %12s %9s %11s %11s" % ("run", "completed", "tokens saved", "of bound",
                                            "TTFT p50", "TTFT p90"))
    for name, r in report["runs"].items():
        print("%-28s %5d/%-3d %12d %8.1f%% %9.0f ms %9.0f ms" % (
            name, r["completed"], len(requests), r["tokens_saved"], 100 * r["saved_of_bound"],
            r["ttft_p50_ms"], r["ttft_p90_ms"]))


if __name__ == "__main__":
    main()
