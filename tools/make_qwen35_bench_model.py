#!/usr/bin/env python3
"""Writes a random-weight qwen35 (Gated DeltaNet hybrid) GGUF of a realistic small shape for
`ggufd bench`.

Default shape (about 0.5 GB in Q8_0, close to Qwen3.5-0.8B): hidden 1024, 24 layers of which every
4th is gated full attention (8 heads / 2 KV heads of 256, partial rotary 64 dims) and the others
Gated DeltaNet (16 key and 16 value heads of 128, conv kernel 4), dense SwiGLU FFN 3584,
vocabulary 32000. Matrices are Q8_0 (or F16 with --type F16); norms, conv kernels and SSM
parameters stay F32 as llama-quantize leaves them. Tensors are generated and written one at a
time, so memory stays at one matrix.

    python3 tools/make_qwen35_bench_model.py --out /tmp/qwen35-bench.gguf
    ggufd inspect /tmp/qwen35-bench.gguf
    ggufd bench --model /tmp/qwen35-bench.gguf --threads 2
"""

import argparse

from bench_model_writer import RandomWeights, write_gguf

ARCH = "qwen35"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output .gguf path")
    p.add_argument("--type", choices=["Q8_0", "F16"], default="Q8_0", help="type of the matrices")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--full-attention-interval", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=256)
    p.add_argument("--rope-dims", type=int, default=64, help="rotated dims per attention head")
    p.add_argument("--linear-k-heads", type=int, default=16)
    p.add_argument("--linear-v-heads", type=int, default=16)
    p.add_argument("--linear-head-dim", type=int, default=128)
    p.add_argument("--conv-kernel", type=int, default=4)
    p.add_argument("--ffn", type=int, default=3584)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--context", type=int, default=65536)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args()


def is_recurrent(a, il):
    return (il + 1) % a.full_attention_interval != 0


def tensors(a):
    """(name, ggml shape {ne0, ne1, ...}, kind) of every tensor, in file order."""
    q_dim, kv_dim = a.heads * a.head_dim, a.kv_heads * a.head_dim
    key_dim = a.linear_k_heads * a.linear_head_dim
    value_dim = a.linear_v_heads * a.linear_head_dim
    conv_dim = 2 * key_dim + value_dim
    yield "token_embd.weight", (a.hidden, a.vocab), "matrix"
    for il in range(a.layers):
        blk = f"blk.{il}"
        yield f"{blk}.attn_norm.weight", (a.hidden,), "norm"
        if is_recurrent(a, il):
            yield f"{blk}.attn_qkv.weight", (a.hidden, conv_dim), "matrix"
            yield f"{blk}.attn_gate.weight", (a.hidden, value_dim), "matrix"
            yield f"{blk}.ssm_conv1d.weight", (a.conv_kernel, conv_dim), "conv"
            yield f"{blk}.ssm_dt.bias", (a.linear_v_heads,), "dt_bias"
            yield f"{blk}.ssm_a", (a.linear_v_heads,), "ssm_a"
            yield f"{blk}.ssm_beta.weight", (a.hidden, a.linear_v_heads), "small_matrix"
            yield f"{blk}.ssm_alpha.weight", (a.hidden, a.linear_v_heads), "small_matrix"
            yield f"{blk}.ssm_norm.weight", (a.linear_head_dim,), "norm"
            yield f"{blk}.ssm_out.weight", (value_dim, a.hidden), "matrix"
        else:
            # attn_q yields [q_h | gate_h] per head
            yield f"{blk}.attn_q.weight", (a.hidden, 2 * q_dim), "matrix"
            yield f"{blk}.attn_k.weight", (a.hidden, kv_dim), "matrix"
            yield f"{blk}.attn_v.weight", (a.hidden, kv_dim), "matrix"
            yield f"{blk}.attn_output.weight", (q_dim, a.hidden), "matrix"
            yield f"{blk}.attn_q_norm.weight", (a.head_dim,), "norm"
            yield f"{blk}.attn_k_norm.weight", (a.head_dim,), "norm"
        yield f"{blk}.post_attention_norm.weight", (a.hidden,), "norm"
        yield f"{blk}.ffn_gate.weight", (a.hidden, a.ffn), "matrix"
        yield f"{blk}.ffn_up.weight", (a.hidden, a.ffn), "matrix"
        yield f"{blk}.ffn_down.weight", (a.ffn, a.hidden), "matrix"
    yield "output_norm.weight", (a.hidden,), "norm"
    yield "output.weight", (a.hidden, a.vocab), "matrix"


def write_metadata(w, a):
    w.add_name("bench-qwen35")
    w.add_uint32(f"{ARCH}.vocab_size", a.vocab)
    w.add_context_length(a.context)
    w.add_embedding_length(a.hidden)
    w.add_block_count(a.layers)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.head_dim)
    w.add_value_length(a.head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(a.rope_dims)
    w.add_rope_freq_base(1e7)
    sections = [a.rope_dims // 6, a.rope_dims // 6, a.rope_dims // 2 - 2 * (a.rope_dims // 6), 0]
    w.add_array(f"{ARCH}.rope.dimension_sections", sections)
    w.add_feed_forward_length(a.ffn)
    w.add_uint32(f"{ARCH}.ssm.conv_kernel", a.conv_kernel)
    w.add_uint32(f"{ARCH}.ssm.state_size", a.linear_head_dim)
    w.add_uint32(f"{ARCH}.ssm.group_count", a.linear_k_heads)
    w.add_uint32(f"{ARCH}.ssm.time_step_rank", a.linear_v_heads)
    w.add_uint32(f"{ARCH}.ssm.inner_size", a.linear_v_heads * a.linear_head_dim)
    w.add_uint32(f"{ARCH}.full_attention_interval", a.full_attention_interval)
    w.add_tokenizer_model("none")


def main():
    a = parse_args()
    if a.linear_v_heads % a.linear_k_heads != 0:
        raise SystemExit("--linear-k-heads must divide --linear-v-heads")
    if a.heads % a.kv_heads != 0:
        raise SystemExit("--kv-heads must divide --heads")
    weights = RandomWeights(a.seed, a.type)
    write_gguf(a.out, ARCH, lambda w: write_metadata(w, a), tensors(a), weights)

if __name__ == "__main__":
    main()
