//! qwen3: the llama block (see `llama.rs`) with per-head RMSNorm of q and k before NEOX RoPE.

use super::llama::Variant;
use crate::model::layers::RopeKind;

pub const VARIANT: Variant = Variant {
    arch: "qwen3",
    rope: RopeKind::Neox,
    requires_qkv_bias: false,
    requires_qk_norm: true,
    requires_experts: false,
};
