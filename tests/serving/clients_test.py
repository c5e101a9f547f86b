"""Real clients against a 1P1D deployment: a plain grpcio client, a client that knows the API
only through server reflection, the standard health check, the openai SDK over HTTP, and
Prometheus' own metrics checker. Every bad input gets its status code and names its field."""

import json
import shutil
import subprocess
import unittest
import urllib.error
import urllib.request

import grpc
import openai

import harness


class ClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Deployment(prefill=1, decode=1)
        cls.reference = harness.reference_generate("The capital of France is", 16, ["--ignore-eos"])

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def test_grpcio_client_generates_tokenizes_and_lists_models(self):
        d = self.d
        ids, text, last = d.generate("The capital of France is", max_tokens=16, ignore_eos=True)
        self.assertEqual(ids, self.reference["token_ids"])
        models = d.inference.ListModels(d.pb.ListModelsRequest(), timeout=5).models
        self.assertEqual(models[0].id, "SmolLM2-135M-Instruct.Q4_1")
        self.assertEqual(models[0].context_length, 8192)
        tokens = d.inference.Tokenize(d.pb.TokenizeRequest(text="The capital of France is"),
                                      timeout=5).token_ids
        self.assertEqual(len(tokens), self.reference["prompt_tokens"])
        # Token-id prompts give the same output as the text they encode.
        ids2, _, _ = d.generate(tokens=list(tokens), max_tokens=16, ignore_eos=True)
        self.assertEqual(ids2, ids)

    def test_health_service_reports_serving(self):
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        stub = health_pb2_grpc.HealthStub(self.d.channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        self.assertEqual(response.status, health_pb2.HealthCheckResponse.SERVING)
        response = stub.Check(health_pb2.HealthCheckRequest(service="tessera.v1.Inference"),
                              timeout=5)
        self.assertEqual(response.status, health_pb2.HealthCheckResponse.SERVING)
        with self.assertRaises(grpc.RpcError) as caught:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
        self.assertEqual(next(watch).status, health_pb2.HealthCheckResponse.SERVING)
        watch.cancel()
        unknown = stub.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        self.assertEqual(next(unknown).status, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        unknown.cancel()

    def test_reflection_alone_is_enough_to_call_generate(self):
        from google.protobuf import descriptor_pool, message_factory
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
            ProtoReflectionDescriptorDatabase)
        channel = grpc.insecure_channel(self.d.grpc_address)  # No generated code below.
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        self.assertIn("tessera.v1.Inference", services)
        self.assertIn("grpc.health.v1.Health", services)
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("tessera.v1.Inference")
        method = service.FindMethodByName("Generate")
        self.assertTrue(method.server_streaming)
        Request = message_factory.GetMessageClass(method.input_type)
        Response = message_factory.GetMessageClass(method.output_type)
        request = Request(text="The capital of France is")
        request.sampling.max_tokens = 16
        request.sampling.ignore_eos = True
        call = channel.unary_stream("/tessera.v1.Inference/Generate",
                                    request_serializer=Request.SerializeToString,
                                    response_deserializer=Response.FromString)
        ids, finish = [], ""
        for response in call(request, timeout=60):
            ids += list(response.token_ids)
            finish = response.finish_reason or finish
        self.assertEqual(ids, self.reference["token_ids"])
        self.assertEqual(finish, "length")

    def test_openai_sdk_completions_chat_and_streaming(self):
        client = openai.OpenAI(base_url="http://%s/v1" % self.d.http_address, api_key="none")
        self.assertEqual([m.id for m in client.models.list()], ["SmolLM2-135M-Instruct.Q4_1"])
        completion = client.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1", prompt="The capital of France is", max_tokens=16,
            temperature=0, extra_body={"ignore_eos": True})
        self.assertEqual(completion.choices[0].text, self.reference["text"])
        self.assertEqual(completion.choices[0].finish_reason, "length")
        self.assertEqual(completion.usage.completion_tokens, 16)
        self.assertEqual(completion.usage.prompt_tokens, self.reference["prompt_tokens"])

        stream = client.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1", prompt="The capital of France is", max_tokens=16,
            temperature=0, stream=True, extra_body={"ignore_eos": True})
        self.assertEqual("".join(chunk.choices[0].text for chunk in stream), self.reference["text"])

        messages = [{"role": "system", "content": "You are brief."},
                    {"role": "user", "content": "What is the capital of France?"}]
        chat = client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1",
                                              messages=messages, max_tokens=24, temperature=0)
        answer = chat.choices[0].message.content
        self.assertEqual(chat.choices[0].message.role, "assistant")
        # The same conversation through `tessera generate --chat` (the model's ChatML template).
        expected = harness.reference_generate("What is the capital of France?", 24,
                                              ["--chat", "--system", "You are brief."])
        self.assertEqual(answer, expected["text"])
        self.assertEqual(chat.usage.prompt_tokens, expected["prompt_tokens"])
        chunks = list(client.chat.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1", messages=messages, max_tokens=24, temperature=0,
            stream=True, stream_options={"include_usage": True}))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(streamed, answer)
        self.assertEqual(chunks[-1].usage.completion_tokens, chat.usage.completion_tokens)
        self.assertEqual([c.choices[0].finish_reason for c in chunks if c.choices][-1],
                         chat.choices[0].finish_reason)

    def test_openai_errors_use_openai_bodies_and_statuses(self):
        client = openai.OpenAI(base_url="http://%s/v1" % self.d.http_address, api_key="none",
                               max_retries=0)
        cases = [({"top_p": 1.5}, "top_p"), ({"max_tokens": 0}, "max_tokens"),
                 ({"temperature": -1}, "temperature"), ({"model": "nope"}, "model"),
                 ({"prompt": ""}, "prompt"), ({"n": 2}, "n")]
        for change, param in cases:
            arguments = {"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "Hi", "max_tokens": 4}
            arguments.update(change)
            with self.subTest(change=change):
                with self.assertRaises(openai.BadRequestError) as caught:
                    client.completions.create(**arguments)
                self.assertEqual(caught.exception.status_code, 400)
                self.assertEqual(caught.exception.body["param"], param)
                self.assertEqual(caught.exception.body["type"], "invalid_request_error")
        request = urllib.request.Request("http://%s/v1/completions" % self.d.http_address,
                                         data=b'{"prompt": "x", "max_tokens": ',
                                         headers={"Content-Type": "application/json"})
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        self.assertEqual(caught.exception.code, 400)
        self.assertIn("not valid JSON at byte 31", json.loads(caught.exception.read())["error"]["message"])

    def test_every_bad_grpc_input_is_invalid_argument_naming_the_field(self):
        d = self.d
        pb = d.pb
        cases = [
            ("empty prompt", pb.GenerateRequest(text=""), "prompt"),
            ("prompt longer than the context", pb.GenerateRequest(
                tokens=pb.TokenIds(ids=[1000] * 9000)), "prompt has 9000 tokens"),
            ("max_tokens < 1", pb.GenerateRequest(
                text="Hi", sampling=pb.SamplingParams(max_tokens=0)), "max_tokens"),
            ("temperature < 0", pb.GenerateRequest(
                text="Hi", sampling=pb.SamplingParams(temperature=-0.5)), "temperature"),
            ("top_p = 0", pb.GenerateRequest(
                text="Hi", sampling=pb.SamplingParams(top_p=0)), "top_p"),
            ("top_p > 1", pb.GenerateRequest(
                text="Hi", sampling=pb.SamplingParams(top_p=1.5)), "top_p"),
            ("unknown model", pb.GenerateRequest(text="Hi", model="gpt-9"), "model"),
            ("token id outside the vocabulary", pb.GenerateRequest(
                tokens=pb.TokenIds(ids=[5, 10 ** 6])), "tokens.ids[1]"),
            ("oversized message", pb.GenerateRequest(text="a" * (5 << 20)), "bytes; the limit"),
        ]
        for name, request, field in cases:
            with self.subTest(name):
                with self.assertRaises(grpc.RpcError) as caught:
                    list(d.inference.Generate(request, timeout=30))
                self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(field, caught.exception.details())
        # Nothing was lost: the deployment still serves.
        ids, _, _ = d.generate("The capital of France is", max_tokens=16, ignore_eos=True)
        self.assertEqual(ids, self.reference["token_ids"])

    def test_metrics_pass_promtool_and_count_requests(self):
        self.d.generate("Hello", max_tokens=2)
        text = urllib.request.urlopen("http://%s/metrics" % self.d.http_address, timeout=10).read()
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian package prometheus) is required")
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertGreater(self.d.metric("tessera_requests_total", {"api": "grpc", "code": "OK"}), 0)
        self.assertGreater(self.d.metric("tessera_time_to_first_token_seconds_count"), 0)
        self.assertEqual(self.d.metric("tessera_workers", {"role": "decode", "state": "serving"}), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
