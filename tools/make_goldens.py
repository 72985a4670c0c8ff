#!/usr/bin/env python3
"""Make the golden fixtures in tests/data/goldens/ from HuggingFace transformers.

Runs where torch + transformers 5.x are installed (the GPU machine's python3; it runs on the CPU
on purpose: fp32 without TF32). For each tiny model it writes
  <name>/config.json          transformers' own save_pretrained config
  <name>/model.safetensors    weights (bf16 on disk; the model ran in fp32 on exactly these values)
  <name>/golden.h5            input_ids [2, L] int64, logits [2, L, V] f32,
                              hidden_states [n_layers+1, 2, L, d] f32 (HF output_hidden_states),
                              greedy [2, 16] int64 (argmax loop over plain forwards, no EOS
                              suppression, no attention mask pitfalls), attributes with versions.
Weights are HF's init with initializer_range 0.08, then made less trivial: RMSNorm weights
1 + 0.1 N(0,1), conv bias ~ U(-0.5, 0.5), dt_proj.bias = softplus^-1(dt) with dt log-uniform in
[1e-3, 1e-1] (mamba_ssm's init, jamba-spec §2.9), A_log = log(1..N) + small jitter, D ~ 1 + 0.1 N.
Mamba kernels off, attn_implementation="eager", fp32 (design.md numerical contract).
Usage: python3 tools/make_goldens.py OUT_DIR
"""
import json
import math
import os
import sys

import h5py
import numpy as np
import torch
import transformers
from transformers import JambaConfig, JambaForCausalLM, MixtralConfig, MixtralForCausalLM

L = 19  # not a multiple of 8
BATCH = 2
N_NEW = 16
SEED = 1234

MODELS = {
    # several attention and Mamba layers, MoE on odd layers, d_state 16, vocab >= 512
    "jamba-tiny-a": (JambaConfig, JambaForCausalLM, dict(
        vocab_size=512, hidden_size=64, intermediate_size=48, num_hidden_layers=8,
        num_attention_heads=4, num_key_value_heads=2, attn_layer_period=4, attn_layer_offset=2,
        expert_layer_period=2, expert_layer_offset=1, num_experts=4, num_experts_per_tok=2,
        mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=8,
        mamba_conv_bias=True, mamba_proj_bias=False, rms_norm_eps=1e-6,
        initializer_range=0.08, use_mamba_kernels=False, tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    # odd sizes everywhere: head_dim 24, MQA, 3 experts, d_state 12, d_conv 3, odd vocab
    "jamba-tiny-odd": (JambaConfig, JambaForCausalLM, dict(
        vocab_size=509, hidden_size=72, intermediate_size=36, num_hidden_layers=6,
        num_attention_heads=3, num_key_value_heads=1, attn_layer_period=3, attn_layer_offset=1,
        expert_layer_period=3, expert_layer_offset=2, num_experts=3, num_experts_per_tok=2,
        mamba_d_state=12, mamba_d_conv=3, mamba_expand=2, mamba_dt_rank="auto",
        mamba_conv_bias=True, mamba_proj_bias=False, rms_norm_eps=1e-6,
        initializer_range=0.08, use_mamba_kernels=False, tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    "mixtral-tiny": (MixtralConfig, MixtralForCausalLM, dict(
        vocab_size=512, hidden_size=64, intermediate_size=48, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
        num_experts_per_tok=2, rms_norm_eps=1e-5, rope_theta=1e6,
        max_position_embeddings=4096, initializer_range=0.08, tie_word_embeddings=False,
        sliding_window=None, pad_token_id=0, bos_token_id=1, eos_token_id=2)),
}


def perturb(model, gen):
    """Make norms, biases, dt and A non-trivial so that a missed weight shows up."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("conv1d.bias"):
                p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
            elif name.endswith("dt_proj.bias"):
                u = torch.rand(p.shape, generator=gen)
                dt = torch.exp(u * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3))
                p.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            elif name.endswith("A_log"):
                n = p.shape[-1]
                base = torch.log(torch.arange(1, n + 1, dtype=torch.float32)).expand(p.shape)
                p.copy_(base + 0.05 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".D"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            # Store exactly bf16-representable values: the checkpoint is bf16 on disk.
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


def layer_summary(model):
    rows = []
    for i, layer in enumerate(model.model.layers):
        kind = type(layer).__name__
        ffn = getattr(layer, "feed_forward", None) or getattr(layer, "block_sparse_moe", None) \
            or getattr(layer, "mlp", None)
        rows.append(f"{i}:{kind}/{type(ffn).__name__}")
    return rows


def make(name, out_root):
    cfg_cls, model_cls, kwargs = MODELS[name]
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    config = cfg_cls(**kwargs)
    config._attn_implementation = "eager"
    model = model_cls(config).to(torch.float32).eval()
    perturb(model, gen)
    print(name, "layers:", " ".join(layer_summary(model)))

    ids = torch.randint(3, config.vocab_size, (BATCH, L), generator=gen)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                    output_hidden_states=True, use_cache=False)
        logits = out.logits.float().numpy()
        hidden = np.stack([h.float().numpy() for h in out.hidden_states])
        greedy = []
        cur = ids.clone()
        for _ in range(N_NEW):
            lg = model(input_ids=cur, attention_mask=torch.ones_like(cur), use_cache=False).logits
            nxt = lg[:, -1, :].argmax(dim=-1, keepdim=True)
            greedy.append(nxt)
            cur = torch.cat([cur, nxt], dim=1)
        greedy = torch.cat(greedy, dim=1).numpy()

    d = os.path.join(out_root, name)
    os.makedirs(d, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(d, extra)):
            os.remove(os.path.join(d, extra))
    with h5py.File(os.path.join(d, "golden.h5.tmp"), "w") as f:
        f["input_ids"] = ids.numpy().astype(np.int64)
        f["logits"] = logits.astype(np.float32)
        f["hidden_states"] = hidden.astype(np.float32)
        f["greedy"] = greedy.astype(np.int64)
        f.attrs["transformers_version"] = str(transformers.__version__)
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["attn_implementation"] = "eager"
        f.attrs["use_mamba_kernels"] = 0
        f.attrs["dtype"] = "float32 compute on bf16-representable weights"
        f.attrs["greedy_rule"] = "argmax over plain forwards, all-ones mask, no min_new_tokens"
        f.attrs["seed"] = SEED
        f.attrs["layers"] = " ".join(layer_summary(model))
    os.replace(os.path.join(d, "golden.h5.tmp"), os.path.join(d, "golden.h5"))
    with open(os.path.join(d, "config.json")) as fh:
        saved = json.load(fh)
    print(name, "saved config keys:", sorted(saved.keys()))
    print(name, "files:", {f: os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)})


def main():
    out_root = sys.argv[1] if len(sys.argv) > 1 else "tests/data/goldens"
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(4)
    print("torch", torch.__version__, "transformers", transformers.__version__)
    for name in MODELS:
        make(name, out_root)


if __name__ == "__main__":
    main()
