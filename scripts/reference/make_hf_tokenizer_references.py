#!/usr/bin/env python3
"""Makes the references for loading Hugging Face tokenizer.json files.

Released checkpoints (Qwen3-MoE, DeepSeek-V3, Llama 3, SmolLM2) ship a tokenizer.json that the
`tokenizers` library reads. Tessera reads the same files; these references hold what
`tokenizers` itself gives, to compare against.

1. tests/data/tokenizer/hf_styles.json
   The default model's vocabulary and merges (from its GGUF) under four tokenizer.json
   configurations that real checkpoints use:
     smollm2      Digits(individual) + ByteLevel(use_regex)          SmolLM2, GPT-2 family
     qwen2        NFC; Split(Qwen2 regex) + ByteLevel                Qwen2/2.5/3, Qwen3-MoE
     deepseek_v3  Split(\\p{N}{1,3}), Split(CJK), Split(main regex)  DeepSeek-V3/R1
     llama3       Split(Llama 3 regex) + ByteLevel, ignore_merges    Llama 3
   For each: the tokenizer.json without its vocabulary and merges ("template"; the tests put
   the GGUF's back in), and the ids `tokenizers` gives every valid UTF-8 text of
   smollm2_cases.jsonl (added tokens matched, no BOS).
2. tests/data/moe/tiny_tokenizer/{tokenizer.json,tokenizer_config.json}
   A 512-token byte-level BPE (Qwen2 style) trained on the cases' prose, so the tiny MoE
   checkpoints (vocabulary 512) can be served with text prompts.

Run (the venv of make_moe_references.py, plus gguf):
  .deps/reference-venv/bin/pip install gguf==0.19.0
  .deps/reference-venv/bin/python scripts/reference/make_hf_tokenizer_references.py

With --full-dirs DIR it instead writes each style's complete tokenizer.json (vocabulary
included) to DIR/<style>/ and times the `tokenizers` library encoding the texts, for
scripts/reference/bench_tokenizers.
"""

import argparse
import json
import os
import time

import gguf
import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
CASES = os.path.join(ROOT, "tests", "data", "tokenizer", "smollm2_cases.jsonl")
STYLES_OUT = os.path.join(ROOT, "tests", "data", "tokenizer", "hf_styles.json")
TINY_OUT = os.path.join(ROOT, "tests", "data", "moe", "tiny_tokenizer")

# The patterns as the released tokenizer.json files spell them.
QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
DEEPSEEK_V3 = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
]

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def byte_level():
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)


def split(pattern):
    return pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)


def configure(tokenizer, style):
    if style == "smollm2":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif style == "qwen2":
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split(QWEN2), byte_level()])
    elif style == "deepseek_v3":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [split(p) for p in DEEPSEEK_V3] + [byte_level()])
    elif style == "llama3":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split(LLAMA3), byte_level()])
    tokenizer.decoder = decoders.ByteLevel()


def gguf_vocabulary(path):
    reader = gguf.GGUFReader(path)

    def strings(name):
        field = reader.fields[name]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    types = reader.fields["tokenizer.ggml.token_type"]
    token_types = [int(types.parts[i][0]) for i in types.data]
    return strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges"), token_types


STYLES = ("smollm2", "qwen2", "deepseek_v3", "llama3")


def style_tokenizers():
    """Each style's tokenizer over the default model's vocabulary and merges."""
    tokens, merges, types = gguf_vocabulary(MODEL)
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    for style in STYLES:
        tokenizer = Tokenizer(models.BPE(vocab, pairs, ignore_merges=(style == "llama3")))
        configure(tokenizer, style)
        # GGUF control (3) and user-defined (4) tokens are the added tokens.
        tokenizer.add_tokens([AddedToken(t, special=(k == 3), normalized=False)
                              for t, k in zip(tokens, types) if k in (3, 4)])
        yield style, tokenizer


def make_styles(cases):
    texts = sorted({c["text"] for c in cases if c["text"] is not None})
    out = {"tokenizers_version": tokenizers.__version__, "texts": texts, "styles": {}}
    for style, tokenizer in style_tokenizers():
        template = json.loads(tokenizer.to_str())
        template["model"]["vocab"] = {}
        template["model"]["merges"] = []
        ids = [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
        out["styles"][style] = {"template": template, "ids": ids}
    with open(STYLES_OUT, "w") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {STYLES_OUT}: {len(texts)} texts x {len(out['styles'])} styles")


def make_tiny(cases):
    prose = [c["text"] for c in cases
             if c["text"] and c["kind"] in ("prose", "contractions", "code", "numbers", "chat")]
    tokenizer = Tokenizer(models.BPE())
    configure(tokenizer, "qwen2")
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(prose, trainer)
    assert tokenizer.get_vocab_size() == 512, tokenizer.get_vocab_size()
    os.makedirs(TINY_OUT, exist_ok=True)
    tokenizer.save(os.path.join(TINY_OUT, "tokenizer.json"))
    with open(os.path.join(TINY_OUT, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None,
                   "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "add_bos_token": False, "model_max_length": 4096,
                   "chat_template": QWEN_CHAT_TEMPLATE}, f, indent=2)
        f.write("\n")
    print(f"wrote {TINY_OUT}")


def bench_styles(out_dir, repeats):
    """Writes every style's tokenizer.json and prints the library's single-thread encoding
    rate over the reference texts as JSON lines."""
    texts = json.load(open(STYLES_OUT))["texts"]
    total = sum(len(t.encode()) for t in texts)
    for style, tokenizer in style_tokenizers():
        os.makedirs(os.path.join(out_dir, style), exist_ok=True)
        tokenizer.save(os.path.join(out_dir, style, "tokenizer.json"))
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for t in texts:
                tokenizer.encode(t, add_special_tokens=False)
            best = min(best, time.perf_counter() - start)
        print(json.dumps({"style": style, "bytes_per_second": total / best,
                          "tokenizers_version": tokenizers.__version__}))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full-dirs", help="write full tokenizer.json per style here and time")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.full_dirs:
        bench_styles(args.full_dirs, args.repeats)
        return
    cases = [json.loads(line) for line in open(CASES)]
    make_styles(cases)
    make_tiny(cases)


if __name__ == "__main__":
    main()
