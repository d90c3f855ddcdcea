//! qwen3moe: the qwen3 block (see `llama.rs`: q/k RMSNorm, NEOX RoPE) with a mixture-of-experts
//! FFN in every layer (softmax router over all experts, top-k, renormalised, SwiGLU experts).

use super::llama::Variant;
use crate::model::layers::RopeKind;

pub const VARIANT: Variant = Variant {
    arch: "qwen3moe",
    rope: RopeKind::Neox,
    requires_qkv_bias: false,
    requires_qk_norm: true,
    requires_experts: true,
};
