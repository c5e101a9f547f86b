"""`tessera bench replay` against a real `tessera serve`, through both of its front doors:
Tessera's gRPC API and the OpenAI-compatible HTTP API. A synthetic BurstGPT trace (`tessera
bench synth`) is replayed open loop; every request completes with exactly the tokens the trace
asked for, the outputs and the HTML report are written, two runs go side by side in one
report, and a target with nothing listening gives every request an error counted by code."""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

import harness


def tessera(*args):
    return subprocess.run([harness.TESSERA] + list(args), capture_output=True, text=True,
                          timeout=600)


class ReplayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tessera-replay-")
        cls.trace = os.path.join(cls.dir, "trace.csv")
        out = tessera("bench", "synth", "--out", cls.trace, "--rate", "4", "--burstiness", "2",
                      "--requests", "24", "--max-input", "64", "--max-output", "12",
                      "--seed", "5")
        assert out.returncode == 0, out.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def replay(self, target, name, *extra):
        out_dir = os.path.join(self.dir, name)
        out = tessera("bench", "replay", "--trace", self.trace, "--target", target, "--out",
                      out_dir, "--slo-ttft", "5000", "--slo-tpot", "500", "--no-progress",
                      *extra)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        with open(os.path.join(out_dir, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(out_dir, "requests.json")) as f:
            requests = json.load(f)
        with open(os.path.join(out_dir, "report.html")) as f:
            self.assertIn('id="ttft-cdf"', f.read())
        return out_dir, summary, requests

    def check_complete(self, summary, requests):
        self.assertEqual(summary["summary"]["requests"], 24)
        self.assertEqual(summary["summary"]["succeeded"], 24, summary["summary"]["errors"])
        for r in requests:
            self.assertEqual(r["status"], "OK")
            self.assertEqual(r["output_tokens"], r["max_tokens"], r)
            self.assertGreater(r["ttft_s"], 0)
        self.assertGreater(summary["summary"]["output_tokens_per_s"], 0)

    def test_grpc_and_http_targets(self):
        with harness.Deployment(prefill=1, decode=1) as d:
            grpc_dir, summary, requests = self.replay("grpc://" + d.grpc_address, "grpc")
            self.check_complete(summary, requests)
            http_dir, summary, requests = self.replay("http://" + d.http_address, "http")
            self.check_complete(summary, requests)
            d.wait_all_kv_free()
        side = os.path.join(self.dir, "side.html")
        out = tessera("bench", "report", "--run", "gRPC=" + grpc_dir, "--run", "HTTP=" + http_dir,
                      "--out", side)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(side) as f:
            page = f.read()
        self.assertIn("gRPC", page)
        self.assertIn("HTTP", page)

    def test_unreachable_target_counts_errors(self):
        port = harness.free_port()
        for target in ("grpc://127.0.0.1:%d" % port, "http://127.0.0.1:%d" % port):
            with self.subTest(target=target):
                _, summary, requests = self.replay(target, "down-" + target[:4],
                                                   "--request-timeout", "5")
                self.assertEqual(summary["summary"]["succeeded"], 0)
                self.assertEqual(summary["summary"]["errors"], {"UNAVAILABLE": 24})
                self.assertTrue(all(r["error"] for r in requests))

    def test_bad_flags_are_refused(self):
        out = tessera("bench", "replay", "--trace", self.trace, "--target", "ftp://x", "--out",
                      os.path.join(self.dir, "bad"))
        self.assertEqual(out.returncode, 2)
        self.assertIn("--target must be grpc://HOST:PORT or http://HOST:PORT", out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
