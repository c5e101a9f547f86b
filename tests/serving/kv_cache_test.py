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
            for i, question in enumerate(QUESTIONS + QUESTIONS[:1]):
                ids, text, last = d.generate(PREFIX + question, max_tokens=16, ignore_eos=True)
                self.assertEqual(ids, self.reference[question]["token_ids"])
                if i == 0:
                    self.assertEqual(last.usage.cached_tokens, 0)
                else:
                    # The shared prefix's full blocks came from the prefill worker's cache.
                    self.assertGreaterEqual(last.usage.cached_tokens, 32, question)
            workers = self.wait_for(d, lambda ws: any(w.kv_device_hits > 0 for w in ws))
            prefill = [w for w in workers if w.role == "prefill"][0]
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


if __name__ == "__main__":
    unittest.main(verbosity=2)
