"""Starts real Tessera deployments (`tessera serve`) on free loopback ports and talks to them
with real clients. Shared by the serving tests; each test file is one CTest test."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESSERA = os.environ.get("TESSERA_BIN", os.path.join(REPO, "build", "engine", "main", "tessera"))

_stubs_dir = None

# Prompts whose greedy output the identity tests compare with `tessera generate`: short,
# code, a longer sentence, and Unicode with an emoji.
GREEDY_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a village by the sea, there lived",
    "Les élèves ont appris que 🌍 tourne autour du soleil, et",
]


def stubs():
    """Generates the Python gRPC stubs from proto/ once per process and imports them."""
    global _stubs_dir
    if _stubs_dir is None:
        from grpc_tools import protoc
        _stubs_dir = tempfile.mkdtemp(prefix="tessera-stubs-")
        atexit.register(shutil.rmtree, _stubs_dir, True)
        protos = ["tessera/v1/inference.proto", "tessera/v1/admin.proto"]
        args = ["protoc", "-I", os.path.join(REPO, "proto"), "--python_out=" + _stubs_dir,
                "--grpc_python_out=" + _stubs_dir] + protos
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        sys.path.insert(0, _stubs_dir)
    from tessera.v1 import admin_pb2, admin_pb2_grpc, inference_pb2, inference_pb2_grpc
    return inference_pb2, inference_pb2_grpc, admin_pb2, admin_pb2_grpc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Deployment:
    """`tessera serve` with the given layout; a context manager that stops it cleanly."""

    def __init__(self, prefill=1, decode=1, both=0, extra=(), env=None, ready_timeout=120):
        self.grpc_address = "127.0.0.1:%d" % free_port()
        self.http_address = "127.0.0.1:%d" % free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="tessera-serve-", suffix=".log", delete=False)
        cmd = [TESSERA, "serve", "--prefill", str(prefill), "--decode", str(decode), "--both",
               str(both), "--grpc", self.grpc_address, "--http", self.http_address] + list(extra)
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        env=dict(os.environ, **(env or {})))
        deadline = time.time() + ready_timeout
        line = ""
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line or "ready" in line:
                break
        if "ready" not in line:
            self.stop()
            raise RuntimeError("tessera serve did not start:\n" + self.logs())
        # Drain the rest of stdout so the child never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        import grpc
        self.channel = grpc.insecure_channel(self.grpc_address)
        pb, rpc, admin_pb, admin_rpc = stubs()
        self.pb, self.admin_pb = pb, admin_pb
        self.inference = rpc.InferenceStub(self.channel)
        self.admin = admin_rpc.AdminStub(self.channel)

    def logs(self):
        if getattr(self, "_final_logs", None) is not None:
            return self._final_logs
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None:
            sys.stderr.write("---- tessera serve log ----\n" + self.logs()[-8000:] + "\n")
        self.close()
        return False

    def close(self):
        """Stops the deployment and removes its log file; logs() still returns the log."""
        self.stop()
        if getattr(self, "_final_logs", None) is None:
            self._final_logs = self.logs()
            self.log.close()
            os.unlink(self.log.name)

    # --- clients -------------------------------------------------------------------------

    def request(self, prompt=None, tokens=None, **sampling):
        pb = self.pb
        request = pb.GenerateRequest(sampling=pb.SamplingParams(**sampling))
        if tokens is not None:
            request.tokens.ids.extend(tokens)
        else:
            request.text = prompt
        return request

    def generate(self, prompt=None, tokens=None, timeout=120, **sampling):
        """Returns (token_ids, text, last_response)."""
        ids, text, last = [], "", None
        for response in self.inference.Generate(self.request(prompt, tokens, **sampling),
                                                timeout=timeout):
            ids += list(response.token_ids)
            text += response.text
            last = response
        return ids, text, last

    def metric(self, name, labels=None):
        """Sum of a metric's series (optionally those with the given labels) from /metrics."""
        import urllib.request
        text = urllib.request.urlopen("http://%s/metrics" % self.http_address, timeout=10).read()
        total = 0.0
        for line in text.decode().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            series, value = line.rsplit(" ", 1)
            if series.split("{")[0] != name:
                continue
            if labels and not all('%s="%s"' % kv in series for kv in labels.items()):
                continue
            total += float(value)
        return total

    def workers(self):
        return list(self.admin.ListWorkers(self.admin_pb.ListWorkersRequest(), timeout=5).workers)

    def wait_all_kv_free(self, timeout=10):
        """Waits until every worker reports all of its KV blocks free (heartbeats lag)."""
        deadline = time.time() + timeout
        workers = []
        while time.time() < deadline:
            workers = self.workers()
            if workers and all(w.free_kv_blocks == w.total_kv_blocks and w.running_sequences == 0
                               and w.in_flight == 0 for w in workers):
                return True
            time.sleep(0.2)
        raise AssertionError("KV blocks still in use: " + str(
            [(w.worker_id, w.total_kv_blocks - w.free_kv_blocks, w.running_sequences, w.in_flight)
             for w in workers]))


def reference_generate(prompt, max_tokens, extra=()):
    """`tessera generate --json` on the same model: the single-process reference output."""
    out = subprocess.run([TESSERA, "generate", "--prompt", prompt, "--max-tokens",
                          str(max_tokens), "--json"] + list(extra),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Cluster(Deployment):
    """A router started alone, with workers added one by one (`tessera router` and
    `tessera worker` processes), for tests that grow, drain or kill individual workers."""

    def __init__(self, router_extra=(), ready_timeout=60):
        self.grpc_address = "127.0.0.1:%d" % free_port()
        self.http_address = "127.0.0.1:%d" % free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="tessera-cluster-", suffix=".log",
                                               delete=False)
        self.process = subprocess.Popen(
            [TESSERA, "router", "--grpc", self.grpc_address, "--http", self.http_address] +
            list(router_extra), stdout=self.log, stderr=self.log)
        self.workers_started = []
        import grpc
        self.channel = grpc.insecure_channel(self.grpc_address)
        grpc.channel_ready_future(self.channel).result(timeout=ready_timeout)
        pb, rpc, admin_pb, admin_rpc = stubs()
        self.pb, self.admin_pb = pb, admin_pb
        self.inference = rpc.InferenceStub(self.channel)
        self.admin = admin_rpc.AdminStub(self.channel)

    def add_worker(self, role, extra=(), timeout=60):
        """Starts a worker and waits until the router lists it; returns (process, worker_id)."""
        before = {w.worker_id for w in self.workers()}
        process = subprocess.Popen(
            [TESSERA, "worker", "--role", role, "--router", self.grpc_address, "--threads", "1"] +
            list(extra), stdout=self.log, stderr=self.log)
        self.workers_started.append(process)
        deadline = time.time() + timeout
        while time.time() < deadline:
            for w in self.workers():
                if w.worker_id not in before and w.pid == process.pid:
                    return process, w.worker_id
            if process.poll() is not None:
                raise RuntimeError("worker exited during start-up:\n" + self.logs())
            time.sleep(0.1)
        raise RuntimeError("worker did not register:\n" + self.logs())

    def stop(self):
        for process in self.workers_started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers_started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
