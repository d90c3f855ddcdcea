#!/usr/bin/env python3
"""Writes a random-weight qwen3moe GGUF of realistic MoE shape for `ggufd bench`.

Default shape (about 1.3 GB in Q8_0): hidden 1024, 24 layers, 16 heads / 4 KV heads of 64,
64 experts of which 8 are used per token, expert FFN width 256, vocabulary 32000. Matrices are
Q8_0 (or F16 with --type F16); norms and the router stay F32, as llama-quantize leaves them.
Tensors are generated, quantized and written one at a time, so memory stays at one expert stack.

    python3 tools/make_moe_bench_model.py --out /tmp/moe-bench.gguf
    ggufd bench --model /tmp/moe-bench.gguf --threads 2
"""

import argparse

from bench_model_writer import RandomWeights, write_gguf

ARCH = "qwen3moe"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output .gguf path")
    p.add_argument("--type", choices=["Q8_0", "F16"], default="Q8_0", help="type of the matrices")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--experts", type=int, default=64)
    p.add_argument("--experts-used", type=int, default=8)
    p.add_argument("--expert-ffn", type=int, default=256)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args()


def tensors(a):
    """The tensor list: (name, ggml shape {ne0, ne1, ...}, kind)."""
    q_dim, kv_dim = a.heads * a.head_dim, a.kv_heads * a.head_dim
    yield "token_embd.weight", (a.hidden, a.vocab), "matrix"
    for il in range(a.layers):
        blk = f"blk.{il}"
        yield f"{blk}.attn_norm.weight", (a.hidden,), "norm"
        yield f"{blk}.attn_q.weight", (a.hidden, q_dim), "matrix"
        yield f"{blk}.attn_k.weight", (a.hidden, kv_dim), "matrix"
        yield f"{blk}.attn_v.weight", (a.hidden, kv_dim), "matrix"
        yield f"{blk}.attn_output.weight", (q_dim, a.hidden), "matrix"
        yield f"{blk}.attn_q_norm.weight", (a.head_dim,), "norm"
        yield f"{blk}.attn_k_norm.weight", (a.head_dim,), "norm"
        yield f"{blk}.ffn_norm.weight", (a.hidden,), "norm"
        yield f"{blk}.ffn_gate_inp.weight", (a.hidden, a.experts), "router"
        yield f"{blk}.ffn_gate_exps.weight", (a.hidden, a.expert_ffn, a.experts), "matrix"
        yield f"{blk}.ffn_up_exps.weight", (a.hidden, a.expert_ffn, a.experts), "matrix"
        yield f"{blk}.ffn_down_exps.weight", (a.expert_ffn, a.hidden, a.experts), "matrix"
    yield "output_norm.weight", (a.hidden,), "norm"
    yield "output.weight", (a.hidden, a.vocab), "matrix"


def write_metadata(w, a):
    w.add_name("moe-bench-qwen3moe")
    w.add_uint32(f"{ARCH}.vocab_size", a.vocab)
    w.add_context_length(a.context)
    w.add_embedding_length(a.hidden)
    w.add_block_count(a.layers)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.head_dim)
    w.add_value_length(a.head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(a.head_dim)
    w.add_rope_freq_base(1e6)
    w.add_feed_forward_length(a.expert_ffn * a.experts_used)
    w.add_expert_feed_forward_length(a.expert_ffn)
    w.add_expert_count(a.experts)
    w.add_expert_used_count(a.experts_used)
    w.add_tokenizer_model("none")


def main():
    a = parse_args()
    if not 0 < a.experts_used <= a.experts:
        raise SystemExit("--experts-used must be in [1, --experts]")
    weights = RandomWeights(a.seed, a.type)
    write_gguf(a.out, ARCH, lambda w: write_metadata(w, a), tensors(a), weights, progress_every=12)

if __name__ == "__main__":
    main()
