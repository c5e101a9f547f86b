#!/usr/bin/env python3
"""Writes greedy-decoding goldens for the default model from llama.cpp (llama-cpp-python).

Run with the reference venv (scripts/reference/setup_venv):
    .deps/venv/bin/python scripts/reference/make_goldens.py [--model M] [--out F]

For each prompt it records the prompt's token ids, the top-1 (id, logit) at every prompt
position, and 64 greedy steps: the chosen token and the top-5 (id, logit) of the raw logits
that chose it. Decoding keeps feeding the argmax past EOS; nothing is sampled or penalized.
Every text is written here (no downloads), so the goldens are reproducible from this script,
the model file and llama-cpp-python==0.3.36 alone.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_MODEL = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "goldens", "smollm2_q4_1.json")

STEPS = 64
TOP_K = 5
N_CTX = 2048
N_BATCH = 2048
N_UBATCH = 512
N_THREADS = 2
SEED = 1234
LONG_TOKENS = (950, 1100)  # Token range the ~1,000-token prompts are grown into.

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml(content):
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n")


# Deterministic long texts: paragraphs from templates, varied by index arithmetic.
_NAMES = ["Mara", "Tobias", "Ines", "Kofi", "Yuki", "Aleksander", "Priya", "Olu", "Sven", "Lucia"]
_PLACES = ["the harbour", "the old mill", "the library", "the orchard", "the train station",
           "the lighthouse", "the market square", "the observatory"]
_THINGS = ["a brass compass", "a letter with no stamp", "a jar of blue ink", "a broken clock",
           "a map of the river", "a wooden flute", "a notebook full of numbers", "a silver key"]
_WEATHER = ["rain drummed on the roofs", "a cold wind came off the sea", "the fog lay thick",
            "the sun was low and orange", "snow had begun to settle", "the air smelled of salt"]
_FEELINGS = ["curious", "uneasy", "hopeful", "tired but determined", "quietly amused", "restless"]


def story_paragraph(i):
    a, b = _NAMES[i % len(_NAMES)], _NAMES[(i * 3 + 1) % len(_NAMES)]
    place, thing = _PLACES[(i * 5 + 2) % len(_PLACES)], _THINGS[(i * 7 + 3) % len(_THINGS)]
    weather, feeling = _WEATHER[i % len(_WEATHER)], _FEELINGS[(i * 2 + 1) % len(_FEELINGS)]
    hour = 6 + (i * 5) % 12
    return (f"On the {i + 1}th day, {weather} when {a} walked to {place}. {a} felt {feeling}, "
            f"because {b} had promised to bring {thing} before {hour} o'clock. When {b} finally "
            f"arrived, they sat together for a while and talked about the town, the ships that "
            f"had left in spring, and the {i * 3 + 4} lanterns that still burned along the "
            f"water. Neither of them mentioned what they had seen the night before.")


_TOPICS = [("caches", "memory hierarchy", "a miss costs hundreds of cycles"),
           ("queues", "scheduling", "tail latency grows quickly near saturation"),
           ("hash tables", "data structures", "load factor decides the probe length"),
           ("compilers", "code generation", "register pressure limits unrolling"),
           ("networks", "distributed systems", "a retry without a deadline amplifies load"),
           ("matrices", "numerical computing", "blocking keeps the working set in cache"),
           ("transformers", "machine learning", "attention cost grows with context length")]


def technical_paragraph(i):
    topic, field, fact = _TOPICS[i % len(_TOPICS)]
    n = 16 << (i % 6)
    return (f"Section {i + 1}. In {field}, the study of {topic} starts from one observation: "
            f"{fact}. Consider a workload of {n} requests per second with a service time of "
            f"{(i % 9) + 1} milliseconds; the utilisation is {n * ((i % 9) + 1) / 1000:.3f}. "
            f"Engineers measure before they optimise, write down the bound they expect, and "
            f"compare the result with it. When the measurement and the bound disagree by more "
            f"than {10 + i % 7} percent, the model of the system is wrong, not the hardware.")


def grow(tokenize, paragraph, prefix="", suffix=""):
    """Adds paragraphs until the text is within LONG_TOKENS tokens."""
    paragraphs = []
    while True:
        paragraphs.append(paragraph(len(paragraphs)))
        text = prefix + "\n\n".join(paragraphs) + suffix
        n = len(tokenize(text))
        if n >= LONG_TOKENS[0]:
            if n > LONG_TOKENS[1]:
                raise SystemExit(f"long prompt overshot: {n} tokens")
            return text


def prompts(tokenize, tokenize_chat):
    p = [
        ("short_hello", False, "Hello"),
        ("short_sky", False, "The sky is blue because"),
        ("short_code", False, "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
        ("short_count", False, "1, 2, 3, 4, 5, 6,"),
        ("short_whitespace", False, "  Leading spaces,\ttabs,\n\nblank lines and trailing  "),
        ("unicode_european", False,
         "Voilà un café naïve à Zürich; die Straße ist grün. Ελληνικά: καλημέρα. "
         "Русский: доброе утро."),
        ("unicode_cjk", False, "人工智能是计算机科学的一个分支。日本語の文章も少し書きます。한국어 문장."),
        ("emoji", False,
         "Weekend plans 🎉: pizza 🍕, hiking 🥾⛰️, cats 🐈‍⬛ and a thumbs up 👍🏽. "
         "Flags 🇫🇷🇯🇵, math ∑x² ≤ ∞, arrows → ⇒"),
        ("long_story", False, None),
        ("long_technical", False, None),
        ("chat_capital", True, "What is the capital of France?"),
        ("chat_unicode", True, "Translate to French and add an emoji: \"Good morning, my friend!\" 😊"),
        ("chat_code", True, "Write a Python function that reverses a string."),
        ("chat_long", True, None),
    ]
    out = []
    for name, chat, text in p:
        if name == "long_story":
            text = grow(tokenize, story_paragraph)
        elif name == "long_technical":
            text = grow(tokenize, technical_paragraph)
        elif name == "chat_long":
            # The whole templated prompt is grown to ~1,000 tokens.
            head = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nRead this story:\n\n"
            tail = ("\n\nSummarize the story above in two sentences.<|im_end|>\n"
                    "<|im_start|>assistant\n")
            text = grow(tokenize_chat, story_paragraph, head, tail)
            out.append((name, chat, text))
            continue
        out.append((name, chat, chatml(text) if chat else text))
    return out


def top_k(logits, k):
    idx = np.argpartition(-logits, k)[:k]
    idx = idx[np.argsort(-logits[idx], kind="stable")]
    return [[int(i), round(float(logits[i]), 5)] for i in idx]


def run_prompt(llm, name, chat, text):
    ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=chat)
    llm.reset()
    llm.eval(ids)
    prompt_top1 = []
    for pos in range(len(ids)):
        row = llm.scores[pos]
        best = int(np.argmax(row))
        prompt_top1.append([best, round(float(row[best]), 5)])
    steps = []
    gaps = []
    logits = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
    for step in range(STEPS):
        top = top_k(logits, TOP_K)
        token = int(np.argmax(logits))
        assert token == top[0][0], (name, step)
        steps.append({"token": token, "top5": top})
        if step < 32:
            gaps.append(float(logits[top[0][0]] - logits[top[1][0]]))
        if step + 1 < STEPS:
            llm.eval([token])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    completion = llm.detokenize([s["token"] for s in steps]).decode("utf-8", errors="replace")
    return {
        "name": name,
        "chat": chat,
        "text": text,
        "prompt_ids": [int(t) for t in ids],
        "prompt_top1": prompt_top1,
        "min_top1_top2_gap_first32": round(min(gaps), 5),
        "completion": completion,
        "steps": steps,
    }


def to_json(golden):
    """JSON with one line per field and per step: small, yet diffs stay readable."""
    def dumps(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    lines = ["{"]
    for key, value in golden.items():
        if key != "prompts":
            lines.append(f" {dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    lines.append(' "prompts": [')
    for i, prompt in enumerate(golden["prompts"]):
        lines.append("  {")
        for key, value in prompt.items():
            if key != "steps":
                lines.append(f"   {dumps(key)}: {dumps(value)},")
        lines.append('   "steps": [')
        steps = prompt["steps"]
        lines += [f"    {dumps(s)}{',' if j + 1 < len(steps) else ''}" for j, s in enumerate(steps)]
        lines.append("   ]")
        lines.append("  }" + ("," if i + 1 < len(golden["prompts"]) else ""))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=N_CTX, n_batch=N_BATCH, n_ubatch=N_UBATCH,
                          n_threads=N_THREADS, n_threads_batch=N_THREADS, logits_all=True,
                          seed=SEED, flash_attn=False, verbose=False)

    def tokenize(text):
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def tokenize_chat(text):
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    results = []
    for name, chat, text in prompts(tokenize, tokenize_chat):
        r = run_prompt(llm, name, chat, text)
        print(f"{name:18s} chat={str(chat):5s} prompt_tokens={len(r['prompt_ids']):5d} "
              f"min_gap_first32={r['min_top1_top2_gap_first32']:.5f} "
              f"completion={r['completion'][:60]!r}", file=sys.stderr)
        results.append(r)

    golden = {
        "reference": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}",
        "generator": "scripts/reference/make_goldens.py",
        "model": os.path.basename(args.model),
        "model_sha256": sha256(args.model),
        "kv_type": "f16",
        "settings": {
            "n_ctx": N_CTX,
            "n_batch": N_BATCH,
            "n_ubatch": N_UBATCH,
            "n_threads": N_THREADS,
            "seed": SEED,
            "flash_attn": "disabled (llama-cpp-python sets LLAMA_FLASH_ATTN_TYPE_DISABLED "
                          "when flash_attn=False; llama.cpp's own default is auto)",
            "type_k": "f16",
            "type_v": "f16",
            "logits_all": True,
            "tokenize": "add_bos=True, which llama.cpp honours only if the model asks for it "
                        "(tokenizer.ggml.add_bos_token is false: no BOS); special=True only "
                        "for chat prompts",
            "decoding": "greedy argmax over raw logits, no penalties, continues past EOS; "
                        "prompt evaluated in one call (split into n_ubatch-token micro-batches),"
                        " then one token per call",
        },
        "notes": [
            "Settings that change the logits: the KV cache type (f16 here, so K and V are "
            "rounded to fp16), flash attention (off here; on changes the summation order), "
            "n_ubatch (prompts over 512 tokens are evaluated in 512-token micro-batches), and "
            "the thread count (it changes reduction splits).",
            "llama.cpp's CPU matmuls quantize activations (to Q8_1 for Q4_1 weights, Q8_0 for "
            "Q8_0 weights), so an implementation with fp32 activations differs from these "
            "logits by small amounts; compare top-1 tokens where the top1-top2 gap is large, "
            "and logits with a tolerance.",
            "prompt_top1 is the argmax (id, logit) after each prompt position; steps[0] is "
            "chosen from the logits of the last prompt position.",
        ],
        "prompts": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(to_json(golden))
    with open(args.out, encoding="utf-8") as f:
        assert json.load(f) == golden
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
