"""Expert parallelism inside the serving stack: `tessera serve --ep 2` makes every worker
instance a group of two processes that meet through the router's rendezvous, hold half of
the model's experts each (the default model's FFNs split into 8 experts of 192) and step
together over Gloo on loopback, each serving its own requests (data-parallel attention).

- Greedy output, disaggregated (1P1D, both pools EP groups) and colocated, with and without
  the expert rebalancer, is token-for-token what `tessera generate --ffn-experts 8` computes
  in one process; concurrent requests spread over both ranks and every KV block is free
  afterwards; /metrics counts each worker's tokens per expert and layer.
- The admin API shows each group's ranks as one instance.
- Draining one rank drains its whole group; requests keep being served by another group.
- `kill -9` of one rank: its partner fails fast with a clear error and leaves; every request
  in flight completes or ends with UNAVAILABLE within a stated bound, never hangs.
- Hugging Face checkpoints (the tiny Qwen3-MoE, DeepSeek-V3 in its release's FP8 format, and a
  dense Llama, each with a tokenizer.json) served by text, 1P1D with both pools EP groups that
  overlap micro-batches: what `tessera generate` computes from the same directory, over gRPC
  and the OpenAI-compatible API; a repeated prompt reuses its cached KV blocks (for
  DeepSeek-V3, its compressed latent KV)."""

import concurrent.futures
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

import grpc

import harness

PROMPTS = harness.GREEDY_PROMPTS
MAX_TOKENS = 24
EP = ["--ep", "2", "--worker-threads", "1"]
# A request in flight when a rank dies ends within this (the partner's collective fails at
# once when the connection drops; the router then answers or retries elsewhere).
FAILURE_BOUND_S = 15
# Writes the tiny MoE checkpoints (tests/engine/write_moe_checkpoint.cc).
WRITE_CHECKPOINT = os.environ.get(
    "TESSERA_WRITE_CHECKPOINT",
    os.path.join(harness.REPO, "build", "tests", "engine", "write_moe_checkpoint"))


class ExpertParallelServingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reference = {p: harness.reference_generate(p, MAX_TOKENS,
                                                       ["--ignore-eos", "--ffn-experts", "8"])
                         for p in PROMPTS}

    def check_identity(self, d):
        for prompt in PROMPTS:
            ids, text, last = d.generate(prompt, max_tokens=MAX_TOKENS, ignore_eos=True)
            with self.subTest(prompt=prompt):
                self.assertEqual(ids, self.reference[prompt]["token_ids"])
                self.assertEqual(text, self.reference[prompt]["text"])
                self.assertEqual(last.finish_reason, "length")
        # Concurrent requests: the router spreads them over both ranks of each group, which
        # then step together with different sequences.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(
                lambda p: d.generate(p, max_tokens=MAX_TOKENS, ignore_eos=True), PROMPTS * 2))
        for prompt, (ids, _, _) in zip(PROMPTS * 2, results):
            self.assertEqual(ids, self.reference[prompt]["token_ids"])
        d.wait_all_kv_free()
        self.check_expert_metrics(d)

    def check_expert_metrics(self, d):
        """/metrics counts the tokens each worker routed to each expert of each layer: here
        every token goes to all 8 experts, so a worker's 8 counts per layer are equal, and
        the same in every layer."""
        import urllib.request
        text = urllib.request.urlopen("http://%s/metrics" % d.http_address, timeout=10).read()
        series = {}
        for line in text.decode().splitlines():
            if not line.startswith("tessera_expert_tokens_total{"):
                continue
            labels, value = line.rsplit(" ", 1)
            fields = dict(kv.split("=") for kv in labels[labels.index("{") + 1:-1].split(","))
            key = (fields["worker"].strip('"'), int(fields["layer"].strip('"')))
            series.setdefault(key, {})[int(fields["expert"].strip('"'))] = float(value)
        workers = {w for w, _ in series}
        self.assertEqual(workers, {w.worker_id for w in d.workers()})
        for worker in workers:
            per_layer = [series[(worker, layer)] for layer in range(30)]
            for counts in per_layer:
                self.assertEqual(sorted(counts), list(range(8)))
                self.assertEqual(len(set(counts.values())), 1, counts)
            self.assertEqual(len({c[0] for c in per_layer}), 1)
        # Every prompt token was computed by some worker (prefill or colocated).
        computed = sum(series[(w, 0)][0] for w in workers)
        prompt_tokens = sum(self.reference[p]["prompt_tokens"] for p in PROMPTS)
        self.assertGreaterEqual(computed, prompt_tokens)

    def check_groups(self, d, roles):
        workers = d.workers()
        groups = {}
        for w in workers:
            self.assertEqual(w.ep_size, 2, w)
            groups.setdefault(w.ep_group, []).append((w.role, w.ep_rank))
        self.assertEqual(sorted(r for ranks in groups.values() for r, _ in ranks[:1]),
                         sorted(roles))
        for ranks in groups.values():
            self.assertEqual(sorted(rank for _, rank in ranks), [0, 1])
        return workers

    def test_disaggregated_groups_match_one_process(self):
        with harness.Deployment(prefill=1, decode=1, extra=EP) as d:
            self.check_groups(d, ["decode", "prefill"])
            self.check_identity(d)

    def test_colocated_group_matches_one_process(self):
        with harness.Deployment(prefill=0, decode=0, both=1, extra=EP) as d:
            self.check_groups(d, ["both"])
            self.check_identity(d)

    def test_rebalancing_keeps_the_output(self):
        # Rebalancing every 3 steps with an extra slot per rank moves expert copies (and their
        # weights) between the ranks while requests run; the text must not change.
        flags = ["--worker-flag=--redundant-experts=1", "--worker-flag=--rebalance-interval=3"]
        with harness.Deployment(prefill=0, decode=0, both=1, extra=EP + flags) as d:
            self.check_identity(d)

    def test_draining_a_rank_drains_its_group(self):
        with harness.Deployment(prefill=0, decode=0, both=2, extra=EP) as d:
            workers = self.check_groups(d, ["both", "both"])
            victim = workers[0]
            d.admin.DrainWorker(d.admin_pb.DrainWorkerRequest(worker_id=victim.worker_id),
                                timeout=5)
            deadline = time.time() + 30
            while time.time() < deadline:
                left = [w for w in d.workers() if w.ep_group == victim.ep_group]
                if not left:
                    break
                time.sleep(0.2)
            self.assertEqual(left, [], "both ranks of the drained group leave")
            ids, _, _ = d.generate(PROMPTS[0], max_tokens=MAX_TOKENS, ignore_eos=True)
            self.assertEqual(ids, self.reference[PROMPTS[0]]["token_ids"])
            # Each rank drained (told by the router, or by its group, whichever came first).
            logs = d.logs()
            self.assertGreaterEqual(
                logs.count(": draining") + logs.count("the expert-parallel group is draining"), 2)

    def test_killed_rank_fails_its_group_fast(self):
        with harness.Deployment(prefill=0, decode=0, both=1, extra=EP) as d:
            workers = self.check_groups(d, ["both"])
            victim = next(w for w in workers if w.ep_rank == 1)

            def long_request(i):
                try:
                    d.generate(PROMPTS[i % len(PROMPTS)], max_tokens=400, ignore_eos=True,
                               timeout=60)
                    return "ok", time.time()
                except grpc.RpcError as e:
                    return e.code().name, time.time()

            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(long_request, i) for i in range(4)]
                time.sleep(2)  # The requests are decoding on both ranks.
                killed_at = time.time()
                os.kill(victim.pid, signal.SIGKILL)
                outcomes = [f.result() for f in futures]
            for code, ended in outcomes:
                self.assertIn(code, ("ok", "UNAVAILABLE"))
                self.assertLess(ended - killed_at, FAILURE_BOUND_S)
            # With the group gone no worker is left: that is what the clients were told.
            self.assertIn("UNAVAILABLE", [code for code, _ in outcomes])
            # The partner said why and left.
            deadline = time.time() + 10
            while time.time() < deadline and "expert-parallel rank 0 of 2" not in d.logs():
                time.sleep(0.2)
            self.assertIn("expert-parallel rank 0 of 2", d.logs())
            self.assertRegex(d.logs(), r"peer died|Connection reset|closed")

    def test_hf_checkpoints_served_by_text(self):
        # The dense Llama family loads from a checkpoint directory too (nothing to dispatch).
        for name in ("qwen3_moe_tiny", "deepseek_v3_tiny_fp8", "llama_tiny"):
            with self.subTest(model=name), tempfile.TemporaryDirectory() as tmp:
                checkpoint = os.path.join(tmp, name)
                subprocess.run([WRITE_CHECKPOINT, name, checkpoint], check=True,
                               capture_output=True,
                               env=dict(os.environ, TESSERA_SOURCE_DIR=harness.REPO))
                model = ["--model", checkpoint]
                reference = {p: harness.reference_generate(p, 16, ["--ignore-eos"] + model)
                             for p in PROMPTS}
                # Random weights: the text is noise, but it must be the same noise.
                self.assertEqual(len({tuple(r["token_ids"]) for r in reference.values()}),
                                 len(PROMPTS))
                # With micro-batch overlap on every step (the prompts are short), each rank
                # also forms a second communicator for its second micro-batch.
                overlap = ["--worker-flag=--ep-overlap", "--worker-flag=--ep-overlap-min-tokens=1"]
                with harness.Deployment(prefill=1, decode=1, extra=EP + model + overlap) as d:
                    self.check_groups(d, ["decode", "prefill"])
                    with concurrent.futures.ThreadPoolExecutor(4) as pool:
                        results = list(pool.map(
                            lambda p: d.generate(p, max_tokens=16, ignore_eos=True), PROMPTS))
                    for prompt, (ids, text, last) in zip(PROMPTS, results):
                        self.assertEqual(ids, reference[prompt]["token_ids"])
                        self.assertEqual(text, reference[prompt]["text"])
                        self.assertEqual(last.usage.prompt_tokens,
                                         reference[prompt]["prompt_tokens"])
                    # The same prompt again reuses its cached KV blocks (DeepSeek-V3's are its
                    # compressed latent KV), with the same output.
                    long_prompt = max(PROMPTS, key=lambda p: reference[p]["prompt_tokens"])
                    ids, _, last = d.generate(long_prompt, max_tokens=16, ignore_eos=True)
                    self.assertEqual(ids, reference[long_prompt]["token_ids"])
                    self.assertGreater(last.usage.cached_tokens, 0)
                    base = "http://%s/v1" % d.http_address
                    models = json.load(urllib.request.urlopen(base + "/models", timeout=10))
                    self.assertEqual([m["id"] for m in models["data"]], [name])
                    body = json.dumps({"model": name, "prompt": PROMPTS[0], "max_tokens": 16,
                                       "temperature": 0, "ignore_eos": True}).encode()
                    completion = json.load(urllib.request.urlopen(urllib.request.Request(
                        base + "/completions", body, {"Content-Type": "application/json"}),
                        timeout=60))
                    self.assertEqual(completion["choices"][0]["text"],
                                     reference[PROMPTS[0]]["text"])
                    d.wait_all_kv_free()
                    self.assertEqual(d.logs().count("micro-batch overlap from 1 tokens"), 4)


if __name__ == "__main__":
    unittest.main(verbosity=2)
