#!/usr/bin/env python3
"""Writes exact (fp64) reference logits for the llama.cpp greedy-decoding goldens.

Run with the reference venv (scripts/reference/setup_venv):
    .deps/venv/bin/python scripts/reference/make_exact_reference.py [--model M] [--goldens G] [--out F]

llama.cpp and our runtime both quantize activations to 8 bits before each matmul, so their
logits differ from each other by up to ~1.0. This script gives both a common yardstick: a
numpy forward pass of the Llama architecture in float64 over the GGUF weights dequantized
exactly, with no activation quantization and a float64 KV cache. The architecture (sizes,
heads, RMSNorm epsilon, RoPE base) is read from the file's metadata.

Each golden prompt is teacher-forced: its prompt_ids are evaluated, then at each of the
golden's steps the exact logits are recorded and the golden's token is fed. Per step the
output holds:
  top5               the exact top-5 (id, logit);
  golden_top5_exact  the exact logits at the golden's top-5 ids, in the golden's order;
  llamacpp_fa_top5   llama.cpp's logits at the golden's top-5 ids with flash attention on
                     (the goldens were made with it off), teacher-forced the same way: a
                     measure of llama.cpp's own spread.
It also re-runs llama.cpp with the goldens' settings (flash attention off) to check that the
goldens reproduce, and prints a summary of the differences. Logits are rounded to 5 decimals.
"""

import os

# Single-threaded BLAS for the float64 forward pass; set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import gguf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens  # noqa: E402  (settings, JSON layout and hashing shared with the goldens)

REPO = make_goldens.REPO
DEFAULT_MODEL = make_goldens.DEFAULT_MODEL
DEFAULT_GOLDENS = make_goldens.DEFAULT_OUT
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "goldens", "smollm2_q4_1_exact.json")
TOP_K = 5
DIVERGENCE_STEPS = 32  # The summary counts argmax disagreements over the first 32 steps.


# ----------------------------------------------------------------------------------------
# Exact weights


def dequantize_exact(tensor):
    """The tensor's values as float64, exactly as the quantization format defines them.

    gguf.quants.dequantize computes in float32. That is exact for F32, F16 and Q8_0
    (x * d: an 8-bit integer times an fp16 scale fits in float32's mantissa), but Q4_1's
    d * q + m rounds when the sum is taken in float32. For Q4_1 the float32 part d * q is
    still exact, so it is taken from gguf.quants.dequantize with every block's m zeroed,
    and m is added in float64.
    """
    qtype = tensor.tensor_type
    T = gguf.GGMLQuantizationType
    data = np.asarray(tensor.data)
    if qtype in (T.F32, T.F16, T.Q8_0):
        w = gguf.quants.dequantize(data, qtype).astype(np.float64)
    elif qtype == T.Q4_1:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        assert (block_size, type_size) == (32, 20)
        blocks = data.reshape(-1, type_size)
        m = blocks[:, 2:4].copy().view(np.float16).astype(np.float64)  # (n_blocks, 1)
        zeroed = blocks.copy()
        zeroed[:, 2:4] = 0
        dq = gguf.quants.dequantize(zeroed, qtype).astype(np.float64)  # (n_blocks, 32), exact
        w = (dq + m).reshape(data.shape[:-1] + (-1,))
        # Cross-check against gguf's float32 dequantization: equal up to float32 rounding.
        w32 = gguf.quants.dequantize(data, qtype).astype(np.float64)
        assert w.shape == w32.shape
        assert np.all(np.abs(w - w32) <= np.abs(w) * 2.0 ** -24 + 1e-45), tensor.name
    else:
        raise SystemExit(f"{tensor.name}: unsupported tensor type {qtype.name}")
    # GGUF lists shapes as [in, out]; numpy's view is (out, in): rows are outputs.
    expected = tuple(int(n) for n in reversed(tensor.shape))
    return w.reshape(expected) if len(expected) > 1 else w.reshape(-1)


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        raise SystemExit(f"metadata key {key} missing")
    return f.contents()


class ExactLlama:
    def __init__(self, path):
        reader = gguf.GGUFReader(path)
        arch = field(reader, "general.architecture")
        if arch != "llama":
            raise SystemExit(f"architecture {arch!r} is not llama")
        p = arch + "."
        self.n_layer = int(field(reader, p + "block_count"))
        self.n_embd = int(field(reader, p + "embedding_length"))
        self.n_ff = int(field(reader, p + "feed_forward_length"))
        self.n_head = int(field(reader, p + "attention.head_count"))
        self.n_head_kv = int(field(reader, p + "attention.head_count_kv"))
        self.eps = float(field(reader, p + "attention.layer_norm_rms_epsilon"))
        self.rope_base = float(field(reader, p + "rope.freq_base"))
        self.head_dim = self.n_embd // self.n_head
        rope_key = p + "rope.dimension_count"
        self.rope_dim = int(field(reader, rope_key)) if rope_key in reader.fields else self.head_dim
        assert self.n_head % self.n_head_kv == 0
        assert self.rope_dim % 2 == 0 and self.rope_dim <= self.head_dim
        for key in (p + "rope.scaling.type", p + "rope.scaling.factor"):
            if key in reader.fields:
                raise SystemExit(f"{key} is set; RoPE scaling is not implemented")

        tensors = {t.name: t for t in reader.tensors}
        if "output.weight" in tensors:
            raise SystemExit("untied output.weight is not implemented")
        if "rope_freqs.weight" in tensors:
            raise SystemExit("rope_freqs.weight is not implemented")
        d, f, hd = self.n_embd, self.n_ff, self.head_dim
        kv = self.n_head_kv * hd

        def get(name, shape):
            w = dequantize_exact(tensors[name])
            assert w.shape == shape, (name, w.shape, shape)
            return w

        self.tok_embd = get("token_embd.weight", (len(field(reader, "tokenizer.ggml.tokens")), d))
        self.n_vocab = self.tok_embd.shape[0]
        self.output_norm = get("output_norm.weight", (d,))
        self.layers = []
        for i in range(self.n_layer):
            b = f"blk.{i}."
            self.layers.append({
                "attn_norm": get(b + "attn_norm.weight", (d,)),
                "wq": get(b + "attn_q.weight", (d, d)),
                "wk": get(b + "attn_k.weight", (kv, d)),
                "wv": get(b + "attn_v.weight", (kv, d)),
                "wo": get(b + "attn_output.weight", (d, d)),
                "ffn_norm": get(b + "ffn_norm.weight", (d,)),
                "gate": get(b + "ffn_gate.weight", (f, d)),
                "up": get(b + "ffn_up.weight", (f, d)),
                "down": get(b + "ffn_down.weight", (d, f)),
            })
        # theta_i = base^(-2i / rope_dim) for the adjacent pairs (2i, 2i + 1).
        self.inv_freq = self.rope_base ** (-np.arange(0, self.rope_dim, 2, dtype=np.float64)
                                           / self.rope_dim)
        self.reset()

    def reset(self):
        empty = (self.n_head_kv, 0, self.head_dim)
        self.k_cache = [np.zeros(empty) for _ in range(self.n_layer)]
        self.v_cache = [np.zeros(empty) for _ in range(self.n_layer)]
        self.n_past = 0

    def rms_norm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        """x: (heads, T, head_dim); rotates the adjacent pairs of the first rope_dim dims."""
        ang = pos[:, None] * self.inv_freq[None, :]  # (T, rope_dim / 2)
        cos, sin = np.cos(ang), np.sin(ang)
        out = x.copy()
        x0, x1 = x[..., 0:self.rope_dim:2], x[..., 1:self.rope_dim:2]
        out[..., 0:self.rope_dim:2] = x0 * cos - x1 * sin
        out[..., 1:self.rope_dim:2] = x0 * sin + x1 * cos
        return out

    def forward(self, tokens, all_logits=False):
        """Appends tokens to the KV cache; returns the logits of the last (or every) one."""
        tokens = np.asarray(tokens, dtype=np.int64)
        T, H, Hkv, hd = len(tokens), self.n_head, self.n_head_kv, self.head_dim
        pos = np.arange(self.n_past, self.n_past + T, dtype=np.float64)
        n_kv = self.n_past + T
        # Causal mask: query t (absolute position n_past + t) sees keys 0..n_past + t.
        mask = np.arange(n_kv)[None, :] > (self.n_past + np.arange(T))[:, None]
        scale = 1.0 / np.sqrt(hd)
        x = self.tok_embd[tokens]  # (T, d)
        for i, L in enumerate(self.layers):
            h = self.rms_norm(x, L["attn_norm"])
            q = (h @ L["wq"].T).reshape(T, H, hd).transpose(1, 0, 2)
            k = (h @ L["wk"].T).reshape(T, Hkv, hd).transpose(1, 0, 2)
            v = (h @ L["wv"].T).reshape(T, Hkv, hd).transpose(1, 0, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            self.k_cache[i] = np.concatenate([self.k_cache[i], k], axis=1)
            self.v_cache[i] = np.concatenate([self.v_cache[i], v], axis=1)
            # Grouped-query attention: query head j reads KV head j // (H / Hkv).
            kh = np.repeat(self.k_cache[i], H // Hkv, axis=0)  # (H, n_kv, hd)
            vh = np.repeat(self.v_cache[i], H // Hkv, axis=0)
            s = (q @ kh.transpose(0, 2, 1)) * scale  # (H, T, n_kv)
            s[:, mask] = -np.inf
            s -= s.max(axis=-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=-1, keepdims=True)
            a = (p @ vh).transpose(1, 0, 2).reshape(T, H * hd)
            x = x + a @ L["wo"].T
            h = self.rms_norm(x, L["ffn_norm"])
            g = h @ L["gate"].T
            u = h @ L["up"].T
            x = x + ((g / (1.0 + np.exp(-g))) * u) @ L["down"].T
        self.n_past = n_kv
        out = x if all_logits else x[-1:]
        logits = self.rms_norm(out, self.output_norm) @ self.tok_embd.T
        return logits if all_logits else logits[0]


# ----------------------------------------------------------------------------------------
# Runs


def top_k(logits, k=TOP_K):
    idx = np.argpartition(-logits, k)[:k]
    idx = idx[np.argsort(-logits[idx], kind="stable")]
    return [[int(i), round(float(logits[i]), 5)] for i in idx]


def at(logits, ids):
    return [round(float(logits[i]), 5) for i in ids]


def exact_prompt(model, prompt):
    model.reset()
    logits = model.forward(prompt["prompt_ids"])
    steps = []
    for j, s in enumerate(prompt["steps"]):
        ids = [i for i, _ in s["top5"]]
        steps.append({"top5": top_k(logits), "golden_top5_exact": at(logits, ids),
                      "exact_gap": float(np.sort(logits)[-1] - np.sort(logits)[-2]),
                      "exact_argmax": int(np.argmax(logits)),
                      "exact_at_golden_token": float(logits[s["token"]])})
        if j + 1 < len(prompt["steps"]):
            logits = model.forward([s["token"]])
    return steps


def llamacpp_prompt(llm, prompt):
    """Teacher-forced llama.cpp logits at the golden's top-5 ids, per step."""
    llm.reset()
    llm.eval(prompt["prompt_ids"])
    logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    out = []
    for j, s in enumerate(prompt["steps"]):
        out.append(at(logits, [i for i, _ in s["top5"]]))
        if j + 1 < len(prompt["steps"]):
            llm.eval([s["token"]])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    return out


def make_llama(model_path, flash_attn):
    import llama_cpp
    g = make_goldens
    return llama_cpp.Llama(model_path=model_path, n_ctx=g.N_CTX, n_batch=g.N_BATCH,
                           n_ubatch=g.N_UBATCH, n_threads=g.N_THREADS,
                           n_threads_batch=g.N_THREADS, logits_all=True, seed=g.SEED,
                           flash_attn=flash_attn, verbose=False)


# ----------------------------------------------------------------------------------------
# Summary


def stats(values):
    v = np.abs(np.asarray(values, dtype=np.float64))
    return f"max {v.max():.4f}  p99 {np.percentile(v, 99):.4f}  mean {v.mean():.4f}"


def summary(golden, exact, fa, fa_off):
    lines = []
    header = f"{'prompt':18s} {'which':20s} |diff| over the golden top-5 ids of all steps"
    lines.append(header)
    all_ = {"llama.cpp - exact": [], "llama.cpp FA - exact": [], "FA on - FA off": []}
    div_lines = []
    n_div_total = 0
    for gp, ep, fp in zip(golden["prompts"], exact, fa):
        diffs = {"llama.cpp - exact": [], "llama.cpp FA - exact": [], "FA on - FA off": []}
        for gs, es, fs in zip(gp["steps"], ep, fp):
            g = [l for _, l in gs["top5"]]
            e = es["golden_top5_exact"]
            diffs["llama.cpp - exact"] += [a - b for a, b in zip(g, e)]
            diffs["llama.cpp FA - exact"] += [a - b for a, b in zip(fs, e)]
            diffs["FA on - FA off"] += [a - b for a, b in zip(fs, g)]
        for key, v in diffs.items():
            lines.append(f"{gp['name']:18s} {key:20s} {stats(v)}")
            all_[key] += v
        div = [(j, gs, es) for j, (gs, es) in enumerate(zip(gp["steps"][:DIVERGENCE_STEPS],
                                                            ep[:DIVERGENCE_STEPS]))
               if gs["token"] != es["exact_argmax"]]
        n_div_total += len(div)
        desc = ", ".join(
            f"step {j}: llama.cpp {gs['token']} exact {es['exact_argmax']} "
            f"(exact top1-top2 gap {es['exact_gap']:.4f}, exact[argmax]-exact[llama.cpp] "
            f"{es['top5'][0][1] - es['exact_at_golden_token']:.4f})"
            for j, gs, es in div)
        div_lines.append(f"{gp['name']:18s} {len(div):2d}/{DIVERGENCE_STEPS}" +
                         (f"  {desc}" if desc else ""))
    lines.append("")
    for key, v in all_.items():
        lines.append(f"{'ALL':18s} {key:20s} {stats(v)}  (n={len(v)})")
    lines.append("")
    lines.append(f"greedy token (llama.cpp, FA off) != exact argmax in the first "
                 f"{DIVERGENCE_STEPS} steps:")
    lines += div_lines
    lines.append(f"{'ALL':18s} {n_div_total}/{DIVERGENCE_STEPS * len(exact)}")
    if fa_off is not None:
        lines.append("")
        lines.append(f"llama.cpp FA off re-run vs the goldens: max |diff| {fa_off:.6f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--goldens", default=DEFAULT_GOLDENS)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()

    with open(args.goldens, encoding="utf-8") as f:
        golden = json.load(f)
    model_sha = make_goldens.sha256(args.model)
    if model_sha != golden["model_sha256"]:
        raise SystemExit(f"{args.model} is not the goldens' model ({golden['model_sha256']})")

    t0 = time.time()
    model = ExactLlama(args.model)
    print(f"loaded {args.model}: {model.n_layer} layers, d={model.n_embd}, ff={model.n_ff}, "
          f"heads {model.n_head}/{model.n_head_kv}, head_dim {model.head_dim}, rope_dim "
          f"{model.rope_dim}, base {model.rope_base}, eps {model.eps} ({time.time() - t0:.1f}s)",
          file=sys.stderr)
    exact = []
    for p in golden["prompts"]:
        t0 = time.time()
        exact.append(exact_prompt(model, p))
        agree = sum(s["token"] == e["exact_argmax"] for s, e in zip(p["steps"], exact[-1]))
        print(f"exact {p['name']:18s} {len(p['prompt_ids']):5d} prompt tokens, argmax agrees "
              f"{agree}/{len(p['steps'])} ({time.time() - t0:.1f}s)", file=sys.stderr)
    del model

    llm = make_llama(args.model, flash_attn=False)
    fa_off = 0.0
    for p in golden["prompts"]:
        for gs, row in zip(p["steps"], llamacpp_prompt(llm, p)):
            fa_off = max(fa_off, max(abs(a - b) for (_, a), b in zip(gs["top5"], row)))
    del llm
    llm = make_llama(args.model, flash_attn=True)
    fa = [llamacpp_prompt(llm, p) for p in golden["prompts"]]
    del llm

    out = {
        "reference": "fp64 forward pass of the dequantized GGUF weights "
                     "(scripts/reference/make_exact_reference.py)",
        "model": os.path.basename(args.model),
        "model_sha256": model_sha,
        "goldens": os.path.relpath(os.path.abspath(args.goldens), REPO),
        "notes": [
            "Teacher-forced on the goldens: each prompt's prompt_ids are evaluated, then at "
            "each step the logits are recorded and the goldens' token is fed.",
            "top5: exact top-5 (id, logit). golden_top5_exact: exact logits at the goldens' "
            "top-5 ids, in the goldens' order.",
            "llamacpp_fa_top5: llama.cpp's logits at the goldens' top-5 ids with flash "
            "attention on (the goldens' other settings unchanged; they were made with it "
            "off), teacher-forced the same way.",
            "Exact: float64 throughout, weights dequantized exactly (Q4_1 as d*q+m), no "
            "activation quantization, float64 KV cache.",
        ],
        "prompts": [
            {"name": p["name"],
             "steps": [{"top5": e["top5"], "golden_top5_exact": e["golden_top5_exact"],
                        "llamacpp_fa_top5": f} for e, f in zip(ep, fp)]}
            for p, ep, fp in zip(golden["prompts"], exact, fa)
        ],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(make_goldens.to_json(out))
    with open(args.out, encoding="utf-8") as f:
        assert json.load(f) == out
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)", file=sys.stderr)
    print(summary(golden, exact, fa, fa_off))


if __name__ == "__main__":
    main()
