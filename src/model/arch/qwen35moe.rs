//! qwen35moe: qwen35 (see `qwen35.rs`) with a mixture-of-experts FFN and a gated shared expert
//! in every layer.

use super::qwen35::Variant;
use crate::model::delta_net::HeadOrder;

pub const VARIANT: Variant = Variant {
    arch: "qwen35moe",
    head_order: HeadOrder::Tiled,
    moe: true,
};
