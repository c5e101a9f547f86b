"""Concurrency, cancellation and admission control through a 1P1D deployment."""

import concurrent.futures
import http.client
import json
import random
import time
import unittest

import grpc

import harness

PROMPTS = ["Write a poem about the sea.", "List ten fruits:", "Explain gravity to a child.",
           "What is the capital of Peru?", "Count from one to twenty:", "Tell me a joke."]


class LoadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.deployment = harness.Deployment(prefill=1, decode=1)

    @classmethod
    def tearDownClass(cls):
        cls.deployment.close()

    def test_64_concurrent_streams_complete_and_free_their_kv(self):
        d = self.deployment

        def one(i):
            max_tokens = 8 + (i * 7) % 40
            ids, text, last = d.generate(PROMPTS[i % len(PROMPTS)] + " " * (i % 3),
                                         max_tokens=max_tokens, ignore_eos=True, timeout=300)
            return i, max_tokens, ids, last

        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            results = list(pool.map(one, range(64)))
        for i, max_tokens, ids, last in results:
            self.assertEqual(len(ids), max_tokens, "request %d" % i)
            self.assertEqual(last.finish_reason, "length")
            self.assertEqual(last.usage.completion_tokens, max_tokens)
        d.wait_all_kv_free()
        # Batched decoding must not change greedy results: request 0 again, alone.
        ids, _, _ = d.generate(PROMPTS[0], max_tokens=results[0][1], ignore_eos=True)
        self.assertEqual(ids, results[0][2])

    def test_cancelling_mid_stream_frees_kv_everywhere(self):
        d = self.deployment
        rng = random.Random(5)
        retries_before = d.metric("tessera_request_retries_total")
        handoff_retries_before = d.metric("tessera_handoff_retries_total")
        for trial in range(10):
            call = d.inference.Generate(d.request(PROMPTS[trial % len(PROMPTS)], max_tokens=500,
                                                  ignore_eos=True), timeout=120)
            # Cancel at different points: before the first token (prefill or handoff in
            # flight), just after it, and deep into decoding.
            stop_after = [0, 1, 2, rng.randint(3, 30)][trial % 4]
            received = 0
            if stop_after == 0:
                time.sleep(rng.uniform(0, 0.05))
            else:
                for _ in call:
                    received += 1
                    if received >= stop_after:
                        break
            call.cancel()
            with self.assertRaises(grpc.RpcError) as caught:
                for _ in call:
                    pass
            self.assertEqual(caught.exception.code(), grpc.StatusCode.CANCELLED)
        d.wait_all_kv_free()
        # A cancel is the client's doing: no worker is blamed and nothing is retried.
        self.assertEqual(d.metric("tessera_request_retries_total"), retries_before)
        self.assertEqual(d.metric("tessera_handoff_retries_total"), handoff_retries_before)

    def test_http_client_disconnect_frees_kv(self):
        d = self.deployment
        host, port = d.http_address.split(":")
        for _ in range(3):
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("POST", "/v1/completions", json.dumps(
                {"prompt": "Tell me everything about France.", "max_tokens": 1000,
                 "ignore_eos": True, "stream": True}), {"Content-Type": "application/json"})
            response = conn.getresponse()
            self.assertEqual(response.status, 200)
            response.read(200)  # A few events, then hang up.
            conn.close()
        d.wait_all_kv_free(timeout=20)

    def test_deadline_ends_a_request_with_deadline_exceeded_and_frees_kv(self):
        d = self.deployment
        with self.assertRaises(grpc.RpcError) as caught:
            d.generate("Write a long story.", max_tokens=4000, ignore_eos=True, timeout=0.5)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        d.wait_all_kv_free()


class AdmissionTest(unittest.TestCase):
    def test_past_the_bound_requests_get_resource_exhausted_at_once(self):
        with harness.Deployment(prefill=1, decode=1, extra=["--max-in-flight", "2"]) as d:
            def one(i):
                start = time.time()
                try:
                    d.generate(PROMPTS[i % len(PROMPTS)], max_tokens=64, ignore_eos=True)
                    return "OK", time.time() - start
                except grpc.RpcError as e:
                    return e.code().name, time.time() - start

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                results = list(pool.map(one, range(8)))
            codes = [code for code, _ in results]
            self.assertGreaterEqual(codes.count("OK"), 2, codes)
            self.assertGreaterEqual(codes.count("RESOURCE_EXHAUSTED"), 1, codes)
            self.assertEqual(set(codes), {"OK", "RESOURCE_EXHAUSTED"})
            # Refusals are immediate, not timeouts: faster than any completed request.
            slowest_refusal = max(t for code, t in results if code == "RESOURCE_EXHAUSTED")
            fastest_success = min(t for code, t in results if code == "OK")
            self.assertLess(slowest_refusal, fastest_success)
            # Over HTTP the refusal is a 429 with OpenAI's error body.
            import openai
            client = openai.OpenAI(base_url="http://%s/v1" % d.http_address, api_key="none",
                                   max_retries=0)
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                busy = [pool.submit(d.generate, PROMPTS[0], max_tokens=200, ignore_eos=True)
                        for _ in range(2)]
                time.sleep(0.3)
                for stream in (False, True):
                    with self.assertRaises(openai.RateLimitError) as caught:
                        client.completions.create(model="SmolLM2-135M-Instruct.Q4_1",
                                                  prompt="Hi", max_tokens=4, stream=stream)
                    self.assertEqual(caught.exception.status_code, 429)
                    self.assertEqual(caught.exception.body["type"], "rate_limit_error")
                [f.result() for f in busy]
            d.wait_all_kv_free()


if __name__ == "__main__":
    unittest.main(verbosity=2)
