//! qwen2: the llama block (see `llama.rs`) with q/k/v biases and NEOX RoPE.

use super::llama::Variant;
use crate::model::layers::RopeKind;

pub const VARIANT: Variant = Variant {
    arch: "qwen2",
    rope: RopeKind::Neox,
    requires_qkv_bias: true,
    requires_qk_norm: false,
    requires_experts: false,
};
