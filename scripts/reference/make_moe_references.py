#!/usr/bin/env python3
"""Makes the references the mixture-of-experts tests compare Tessera against.

No MoE checkpoint can be downloaded here, so each reference model is a tiny one with the real
architecture and real config fields (Qwen3-MoE; DeepSeek-V3 with multi-head latent attention,
shared experts and group-limited sigmoid routing) and deterministic pseudo-random weights.

For each model this writes, under tests/data/moe/:
  <name>.json        the Hugging Face config, the weight manifest (every tensor's name, shape
                     and the scale and offset of its uniform distribution), the seed, the
                     prompts, the first values of every tensor (so the C++ generator can check
                     it reproduces them bit for bit),
                     and transformers' own logits for every position of every prompt.

The weights are not committed: the C++ tests regenerate them from the manifest with
engine/safetensors/synthetic_weights.h, whose generator this file reimplements with numpy.

Run (needs torch and transformers from PyPI; the tests themselves do not):
  python3 -m venv .deps/reference-venv
  .deps/reference-venv/bin/pip install torch==2.15.0 transformers==5.23.0 numpy safetensors
  .deps/reference-venv/bin/python scripts/reference/make_moe_references.py
"""

import argparse
import copy
import json
import math
import os
import re

import numpy as np

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def mix_int(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def mix_array(z):
    # uint64 arithmetic in numpy wraps modulo 2^64, as in C++.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def synthetic_values(seed, name, count, scale, offset):
    """Elements [0, count) of a tensor, exactly as SyntheticValues() computes them."""
    base = np.uint64(mix_int(seed ^ fnv1a64(name)))
    index = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = mix_array(base + index * np.uint64(GOLDEN))
    u = (z >> np.uint64(40)).astype(np.float64) / 16777216.0
    return (offset + (2.0 * u - 1.0) * scale).astype(np.float32)


def distribution(name, shape):
    """(scale, offset) of a tensor's uniform distribution, by what the tensor is."""
    if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
        return 0.1, 1.0  # Norm gains around one.
    if name.endswith("e_score_correction_bias"):
        return 0.5, 0.0
    if len(shape) == 1:
        return 0.1, 0.0
    if name.endswith("embed_tokens.weight"):
        return 1.0, 0.0
    # Unit-variance outputs for unit-variance inputs: U(-a, a) has variance a^2 / 3.
    return math.sqrt(3.0 / shape[-1]), 0.0


QWEN3_MOE = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "vocab_size": 512,
    "hidden_size": 256,
    "intermediate_size": 512,
    "moe_intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "num_experts": 32,
    "num_experts_per_tok": 8,
    "norm_topk_prob": True,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "attention_bias": False,
    "tie_word_embeddings": False,
}

DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "vocab_size": 512,
    "hidden_size": 256,
    "intermediate_size": 512,
    "moe_intermediate_size": 64,
    "num_hidden_layers": 4,
    "first_k_dense_replace": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "q_lora_rank": 128,
    "kv_lora_rank": 64,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "v_head_dim": 32,
    "n_routed_experts": 32,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "n_group": 4,
    "topk_group": 2,
    "routed_scaling_factor": 2.5,
    "norm_topk_prob": True,
    "topk_method": "noaux_tc",
    "scoring_func": "sigmoid",
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "rope_interleave": True,
    "attention_bias": False,
    "tie_word_embeddings": False,
}

# DeepSeek-V3 with its own long-context settings: YaRN rope_scaling exactly as in the released
# config.json, whose max_position_embeddings it also takes. Same tensors (same names and seed)
# as deepseek_v3_tiny, so only the rotary embedding and the softmax scale differ.
DEEPSEEK_V3_YARN = dict(DEEPSEEK_V3, max_position_embeddings=163840, rope_scaling={
    "type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
    "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})

# DeepSeek-V3 as released: FP8 (E4M3) linear weights in 128x128 blocks with float scales
# (`<name>_scale_inv`), the release's quantization_config verbatim. The weights transformers
# runs are the dequantized ones, which is what the FP8 checkpoint stands for.
DEEPSEEK_V3_FP8 = dict(DEEPSEEK_V3, quantization_config={
    "activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
    "weight_block_size": [128, 128]})

# The dense families Tessera loads with the same blocks: Qwen3, and Llama (no query/key norms;
# embeddings tied to the output, as SmolLM2's are).
QWEN3 = {k: v for k, v in QWEN3_MOE.items()
         if k not in ("moe_intermediate_size", "num_experts", "num_experts_per_tok",
                      "norm_topk_prob", "decoder_sparse_step", "mlp_only_layers")} | {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
}

LLAMA = {k: v for k, v in QWEN3.items() if k != "head_dim"} | {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "mlp_bias": False,
    "tie_word_embeddings": True,
}

MODELS = {"qwen3_moe_tiny": QWEN3_MOE, "deepseek_v3_tiny": DEEPSEEK_V3,
          "deepseek_v3_tiny_yarn": DEEPSEEK_V3_YARN, "deepseek_v3_tiny_fp8": DEEPSEEK_V3_FP8,
          "qwen3_tiny": QWEN3, "llama_tiny": LLAMA}
# Prompt lengths per model; YaRN's interpolated frequencies want more positions to show.
PROMPT_LENGTHS = {"deepseek_v3_tiny_yarn": (40, 9)}


def is_fp8_weight(name, shape):
    """The tensors DeepSeek-V3's FP8 release stores as FP8: every linear projection's weight
    (attention and MLP, experts and shared experts), not the router, norms, embedding or head."""
    return len(shape) == 2 and re.search(r"_proj(_with_mqa)?\.weight$", name) is not None


def fp8_dequantized(values, block):
    """`values` through block FP8 quantization and back, in float32 as the checkpoint stores
    it: per block, scale = max |v| / 448; code = e4m3(v / scale); value = code * scale."""
    import torch

    rows, columns = values.shape
    out = np.empty_like(values)
    for r in range(0, rows, block[0]):
        for c in range(0, columns, block[1]):
            tile = values[r:r + block[0], c:c + block[1]]
            amax = np.float32(np.abs(tile).max())
            scale = amax / np.float32(448.0) if amax > 0 else np.float32(1.0)
            codes = torch.from_numpy(tile / scale).to(torch.float8_e4m3fn)
            out[r:r + block[0], c:c + block[1]] = codes.to(torch.float32).numpy() * scale
    return out


def make_reference(name, config, seed, out_dir):
    import tempfile

    import torch
    import transformers
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with tempfile.TemporaryDirectory() as checkpoint:
        # The checkpoint's tensor names and shapes as they are on the Hub (one tensor per
        # expert), which is what Tessera loads: transformers writes them on save.
        # A deep copy: transformers fills rope_scaling in place (rope_type, rope_theta), and
        # the reference keeps the config as written.
        # The FP8 quantization_config would make transformers quantize on load; the model it
        # runs gets the dequantized weights instead.
        quantization = config.get("quantization_config")
        hf_config = transformers.AutoConfig.for_model(
            **{k: v for k, v in copy.deepcopy(config).items() if k != "quantization_config"})
        transformers.AutoModelForCausalLM.from_config(
            hf_config, dtype=torch.float32).save_pretrained(checkpoint)
        layout = []
        for file_name in sorted(os.listdir(checkpoint)):
            if file_name.endswith(".safetensors"):
                with safe_open(os.path.join(checkpoint, file_name), "np") as f:
                    layout += [(key, list(f.get_slice(key).get_shape())) for key in f.keys()]
                os.remove(os.path.join(checkpoint, file_name))
        index = os.path.join(checkpoint, "model.safetensors.index.json")
        if os.path.exists(index):
            os.remove(index)

        manifest = []
        first_values = {}
        tensors = {}
        for tensor_name, shape in layout:
            scale, offset = distribution(tensor_name, shape)
            values = synthetic_values(seed, tensor_name, int(np.prod(shape)), scale, offset)
            tensors[tensor_name] = values.reshape(shape)
            entry = {"name": tensor_name, "shape": shape, "scale": scale, "offset": offset}
            if quantization and is_fp8_weight(tensor_name, shape):
                block = quantization["weight_block_size"]
                assert block[0] == block[1], block
                tensors[tensor_name] = fp8_dequantized(tensors[tensor_name], block)
                entry["fp8_block"] = block[0]
            manifest.append(entry)
            first_values[tensor_name] = [float(v) for v in values[:3]]
        save_file(tensors, os.path.join(checkpoint, "model.safetensors"),
                  metadata={"format": "pt"})
        # transformers' own loading path, from the Hub layout.
        model, loading = transformers.AutoModelForCausalLM.from_pretrained(
            checkpoint, dtype=torch.float32, attn_implementation="eager",
            output_loading_info=True)
        problems = {k: v for k, v in loading.items() if v}
        if problems:
            raise SystemExit("%s: transformers did not load every tensor: %s" % (name, problems))
        model.eval()

        rng = np.random.default_rng(seed)
        prompts = [rng.integers(0, config["vocab_size"], size=n).tolist()
                   for n in PROMPT_LENGTHS.get(name, (12, 7))]
        logits = []
        with torch.no_grad():
            for prompt in prompts:
                out = model(torch.tensor([prompt])).logits[0].to(torch.float32).numpy()
                logits.append(out)

    document = {
        "name": name,
        "config": config,
        "seed": seed,
        "tensors": manifest,
        "first_values": first_values,
        "prompts": prompts,
        # Per prompt, per position, per vocabulary entry; float32 values in their shortest
        # decimal form.
        "logits": [[[float(str(np.float32(v))) for v in row] for row in out] for out in logits],
        "made_with": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    print("%s: %d tensors, %d parameters, prompts of %s tokens" % (
        name, len(manifest), sum(int(np.prod(t["shape"])) for t in manifest),
        [len(p) for p in prompts]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "moe"))
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in args.models.split(","):
        make_reference(name, MODELS[name], args.seed, args.out)


if __name__ == "__main__":
    main()
