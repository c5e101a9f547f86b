"""Greedy output through `tessera serve` is token-for-token what `tessera generate` produces,
in every layout: 1 prefill + 1 decode (KV over shared memory), the same over gRPC, 2P2D, and
colocated. Seeded sampling survives the handoff too."""

import time
import unittest

import harness

PROMPTS = harness.GREEDY_PROMPTS
MAX_TOKENS = 24


class IdentityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reference = {p: harness.reference_generate(p, MAX_TOKENS, ["--ignore-eos"])
                         for p in PROMPTS}
        cls.seeded = harness.reference_generate(
            PROMPTS[2], MAX_TOKENS,
            ["--ignore-eos", "--temperature", "0.8", "--top-p", "0.9", "--seed", "7"])

    def check_layout(self, deployment, seeded=False):
        for prompt in PROMPTS:
            ids, text, last = deployment.generate(prompt, max_tokens=MAX_TOKENS, ignore_eos=True)
            with self.subTest(prompt=prompt):
                self.assertEqual(ids, self.reference[prompt]["token_ids"])
                self.assertEqual(text, self.reference[prompt]["text"])
                self.assertEqual(last.finish_reason, "length")
                self.assertEqual(last.usage.completion_tokens, MAX_TOKENS)
                self.assertEqual(last.usage.prompt_tokens, self.reference[prompt]["prompt_tokens"])
                self.assertGreater(last.usage.time_to_first_token_ms, 0)
        if seeded:
            ids, text, _ = deployment.generate(PROMPTS[2], max_tokens=MAX_TOKENS, ignore_eos=True,
                                               temperature=0.8, top_p=0.9, seed=7)
            self.assertEqual(ids, self.seeded["token_ids"])
        deployment.wait_all_kv_free()

    def pulls(self, deployment, expected):
        """Handoffs by transport, as the decode workers' heartbeats report them."""
        deadline = time.time() + 5
        while True:
            decode = [w for w in deployment.workers() if w.role == "decode"]
            got = (sum(w.kv_pulls_shared_memory for w in decode),
                   sum(w.kv_pulls_network for w in decode))
            if got == expected or time.time() > deadline:
                return got
            time.sleep(0.1)

    def test_one_prefill_one_decode_shared_memory(self):
        with harness.Deployment(prefill=1, decode=1) as d:
            self.check_layout(d, seeded=True)
            expected = (len(PROMPTS) + 1, 0)
            self.assertEqual(self.pulls(d, expected), expected)

    def test_one_prefill_one_decode_over_grpc(self):
        with harness.Deployment(prefill=1, decode=1, extra=["--network-kv"]) as d:
            self.check_layout(d)
            expected = (0, len(PROMPTS))
            self.assertEqual(self.pulls(d, expected), expected)

    def test_two_prefill_two_decode(self):
        with harness.Deployment(prefill=2, decode=2, extra=["--worker-threads", "1"]) as d:
            self.check_layout(d)
            roles = sorted(w.role for w in d.workers())
            self.assertEqual(roles, ["decode", "decode", "prefill", "prefill"])

    def test_colocated(self):
        with harness.Deployment(prefill=0, decode=0, both=1) as d:
            self.check_layout(d, seeded=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
