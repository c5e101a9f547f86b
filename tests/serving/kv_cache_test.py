"""The KV-cache manager through a real deployment: prefix caching reports cached tokens and
changes no token, a small device tier offloads to the host tier and restores, and the
counters reach `tessera admin` and /metrics."""

import time
import unittest

import harness

PREFIX = ("You are a helpful assistant for a bakery. The bakery opens at seven in the morning "
          "and closes at six in the evening. It sells bread, croissants, cakes and coffee. "
          "Answer briefly and politely. Customer question: ")
QUESTIONS = ["When do you open?", "Do you sell coffee?", "What cakes do you have?"]


class KvCacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reference = {q: harness.reference_generate(PREFIX + q, 16, ["--ignore-eos"])
                         for q in QUESTIONS}

    def wait_for(self, deployment, predicate, timeout=5):
        deadline = time.time() + timeout
        while True:
            workers = deployment.workers()
            if predicate(workers) or time.time() > deadline:
                return workers
            time.sleep(0.1)

    def test_prefix_caching_through_the_deployment(self):
        with harness.Deployment(prefill=1, decode=1) as d:
            def pulled():
                time.sleep(0.7)  # A heartbeat carries the counter.
                return [w for w in d.workers() if w.role == "decode"][0].kv_bytes_pulled
            for i, question in enumerate(QUESTIONS + QUESTIONS[:1]):
                if i == 1:
                    whole_prompt = pulled()  # The first handoff moved the whole prompt.
                ids, text, last = d.generate(PREFIX + question, max_tokens=16, ignore_eos=True)
                self.assertEqual(ids, self.reference[question]["token_ids"])
                if i == 0:
                    self.assertEqual(last.usage.cached_tokens, 0)
                else:
                    # The shared prefix's full blocks came from the prefill worker's cache.
                    self.assertGreaterEqual(last.usage.cached_tokens, 32, question)
            workers = self.wait_for(d, lambda ws: any(
                w.role == "prefill" and w.kv_device_hits > 0 for w in ws))
            prefill = [w for w in workers if w.role == "prefill"][0]
            # The decode worker keeps imported blocks too, and pulls only what it lacks: a
            # new question after the shared prefix moves a fraction of the first one's bytes.
            before = pulled()
            d.generate(PREFIX + "Is there parking nearby?", max_tokens=4, ignore_eos=True)
            suffix_only = pulled() - before
            self.assertGreater(suffix_only, 0)
            self.assertLess(suffix_only, whole_prompt / 2)
            self.assertGreater(prefill.kv_device_hits, 0)
            self.assertGreater(prefill.kv_lookups, prefill.kv_device_hits)
            self.assertGreater(d.metric("tessera_kv_hits_total", {"tier": "device"}), 0)
            self.assertGreater(d.metric("tessera_kv_hit_rate", {"tier": "device"}), 0)
            d.wait_all_kv_free()

    def test_host_tier_offload_and_restore_through_the_deployment(self):
        flags = ["--worker-flag=--kv-blocks=8", "--worker-flag=--host-kv-blocks=64"]
        with harness.Deployment(prefill=0, decode=0, both=1, extra=flags) as d:
            first = QUESTIONS[2]
            ids, _, _ = d.generate(PREFIX + first, max_tokens=16, ignore_eos=True)
            self.assertEqual(ids, self.reference[first]["token_ids"])
            # Unrelated long requests need every device block: the prefix moves to the host.
            for prompt in ["Write a poem about the sea.", "List the planets in order."]:
                d.generate(prompt, max_tokens=100, ignore_eos=True)
            ids, _, last = d.generate(PREFIX + first, max_tokens=16, ignore_eos=True)
            self.assertEqual(ids, self.reference[first]["token_ids"])
            self.assertGreater(last.usage.cached_tokens, 0)
            workers = self.wait_for(d, lambda ws: ws and ws[0].kv_restored > 0)
            self.assertGreater(workers[0].kv_offloaded, 0)
            self.assertGreater(workers[0].kv_restored, 0)
            self.assertGreater(workers[0].kv_host_hits, 0)
            self.assertGreater(d.metric("tessera_kv_blocks_restored_total"), 0)
            self.assertGreater(d.metric("tessera_kv_tier_bytes_moved_total"), 0)
            d.wait_all_kv_free()


class KvRoutingTest(unittest.TestCase):
    def index_matches(self, deployment, timeout=5):
        """Waits until the router's index of every worker equals what the worker holds."""
        deadline = time.time() + timeout
        while True:
            workers = deployment.workers()
            pairs = [(w.worker_id, w.held_block_contents, w.indexed_block_contents)
                     for w in workers]
            if all(held == indexed for _, held, indexed in pairs) or time.time() > deadline:
                return pairs
            time.sleep(0.1)

    def cached_tokens(self, deployment, questions):
        total = []
        for question in questions:
            _, _, last = deployment.generate(PREFIX + question, max_tokens=4, ignore_eos=True)
            total.append(last.usage.cached_tokens)
        return total

    def test_requests_go_to_the_worker_holding_their_prefix(self):
        questions = ["Q%d: what do you bake on day %d?" % (i, i) for i in range(6)]
        with harness.Deployment(prefill=2, decode=1, extra=["--worker-threads", "1"]) as d:
            cached = self.cached_tokens(d, questions)
            # The first computes the prefix; every later one lands where it is cached.
            self.assertEqual(cached[0], 0)
            self.assertTrue(all(c >= 32 for c in cached[1:]), cached)
            pairs = self.index_matches(d)
            for worker, held, indexed in pairs:
                self.assertEqual(held, indexed, worker)
            self.assertTrue(any(held > 0 for _, held, _ in pairs))
        with harness.Deployment(prefill=2, decode=1, extra=[
                "--worker-threads", "1", "--router-flag=--route-overlap-weight=0"]) as d:
            load_only = self.cached_tokens(d, questions)
            # By load alone the equal workers take turns, so half the requests miss the cache.
            self.assertLess(sum(load_only), sum(cached[1:]))

    def test_a_restarted_router_resynchronizes_from_snapshots(self):
        import signal
        import subprocess
        with harness.Cluster() as c:
            c.add_worker("prefill")
            c.add_worker("decode")
            self.cached_tokens(c, ["first?", "second?"])
            before = self.index_matches(c)
            self.assertTrue(all(held == indexed and held > 0
                                for _, held, indexed in before if "prefill" in _), before)
            # A new router on the same address knows nothing; the workers re-register and send
            # snapshots, and the index is exact again without any request being made.
            c.process.send_signal(signal.SIGKILL)
            c.process.wait()
            c.process = subprocess.Popen(
                [harness.TESSERA, "router", "--grpc", c.grpc_address, "--http", c.http_address],
                stdout=c.log, stderr=c.log)
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    if len(c.workers()) == 2:
                        break
                except Exception:
                    pass
                time.sleep(0.2)
            after = self.index_matches(c)
            held = {w: h for w, h, _ in after}
            self.assertEqual(sorted(h for h in held.values()),
                             sorted(h for _, h, _ in before))
            for worker, held_count, indexed in after:
                self.assertEqual(held_count, indexed, worker)
            # And routing uses it: the prefix is still served from the cache.
            self.assertGreaterEqual(self.cached_tokens(c, ["third?"])[0], 32)


class CachePoolTest(unittest.TestCase):
    def test_blocks_computed_on_one_worker_serve_another_and_a_dead_pool_costs_misses_only(self):
        import os
        import signal
        reference = {q: harness.reference_generate(PREFIX + q, 8, ["--ignore-eos"])["token_ids"]
                     for q in QUESTIONS}
        # Load-only routing, so requests alternate between the two prefill workers and the
        # second worker can only get the prefix from the pool.
        extra = ["--cache", "1", "--worker-threads", "1", "--router-flag=--route-overlap-weight=0"]
        with harness.Deployment(prefill=2, decode=1, extra=extra) as d:
            roles = sorted(w.role for w in d.workers())
            self.assertEqual(roles, ["cache", "decode", "prefill", "prefill"])
            results = []
            for question in QUESTIONS:
                ids, _, last = d.generate(PREFIX + question, max_tokens=8, ignore_eos=True)
                self.assertEqual(ids, reference[question])
                results.append(last.usage.cached_tokens)
                time.sleep(0.5)  # Let the blocks reach the pool.
            self.assertEqual(results[0], 0)
            self.assertGreaterEqual(results[1], 32, results)  # From the pool, on the other worker.
            time.sleep(0.7)
            workers = d.workers()
            cache = [w for w in workers if w.role == "cache"][0]
            self.assertGreater(cache.pool_stored_blocks, 0)
            self.assertGreater(sum(w.pool_hits for w in workers if w.role == "prefill"), 0)
            self.assertGreater(d.metric("tessera_kv_hits_total", {"tier": "pool"}), 0)
            self.assertGreater(d.metric("tessera_kv_hit_rate", {"tier": "pool"}), 0)
            # Kill the only cache server in the middle of a burst of requests that put blocks
            # in and fetch blocks from it: every request still succeeds, the pool just misses.
            import concurrent.futures

            def one(i):
                ids, _, last = d.generate(PREFIX + "Question number %d?" % i, max_tokens=8,
                                          ignore_eos=True)
                return len(ids), last.finish_reason

            with concurrent.futures.ThreadPoolExecutor(12) as pool:
                futures = [pool.submit(one, i) for i in range(24)]
                time.sleep(0.5)
                os.kill(cache.pid, signal.SIGKILL)
                results = [f.result() for f in futures]
            self.assertEqual(results, [(8, "length")] * 24)
            d.wait_all_kv_free(timeout=15)


if __name__ == "__main__":
    unittest.main(verbosity=2)
