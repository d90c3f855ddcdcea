//! qwen3next: the qwen35 hybrid (see `qwen35.rs`) with MoE FFNs, a fused `ssm_ba` projection
//! (picked up by the GDN loader) and grouped v-heads (v-head j reads k-head j / r).

use super::qwen35::Variant;
use crate::model::delta_net::HeadOrder;

pub const VARIANT: Variant = Variant {
    arch: "qwen3next",
    head_order: HeadOrder::Grouped,
    moe: true,
};
