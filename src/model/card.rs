//! The architecture card: what `ggufd inspect` and the DescribeModel RPC report.

use super::Model;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize)]
pub struct TypeUsage {
    pub tensors: usize,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelCard {
    pub name: String,
    pub architecture: String,
    /// dense / moe / hybrid
    pub kind: String,
    pub parameters: u64,
    pub active_parameters: u64,
    pub file_bytes: u64,
    pub context_length: u32,
    pub layers: u32,
    /// One letter per layer: `A` full attention, `S` sliding-window attention.
    pub layer_map: String,
    pub experts: u32,
    pub experts_used: u32,
    pub has_chat_template: bool,
    pub embedding_length: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub vocab_size: u32,
    pub tokenizer: String,
    /// Bytes of tensor data per component (embeddings, attention, ffn, norms, output).
    pub bytes_per_component: BTreeMap<String, u64>,
    /// Tensors and bytes per element type.
    pub quant_mix: BTreeMap<String, TypeUsage>,
    /// KV-cache bytes each token of context adds (f32 keys and values, all attention layers).
    pub kv_bytes_per_token: u64,
    /// Fixed bytes of recurrent state (conv + SSM / delta-rule state) each sequence carries,
    /// independent of its length (0 for attention-only models).
    pub state_bytes_per_sequence: u64,
}

/// The component a tensor belongs to, from its GGUF name.
fn component(name: &str) -> &'static str {
    let leaf = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let leaf = leaf.rsplit('.').next().unwrap_or(leaf);
    if name.starts_with("token_embd") {
        "embeddings"
    } else if name.starts_with("output.") {
        "output"
    } else if leaf.ends_with("norm") {
        "norms"
    } else if leaf.starts_with("attn") {
        "attention"
    } else if leaf.starts_with("ffn") {
        "ffn"
    } else {
        "other"
    }
}

/// Stacked routed-expert tensors (`blk.N.ffn_{gate,up,down,gate_up}_exps.{weight,bias}`).
fn is_routed_expert(name: &str) -> bool {
    name.rsplit('.')
        .nth(1)
        .is_some_and(|leaf| leaf.ends_with("_exps"))
}

/// Layer-map letters of recurrent mixers: Gated DeltaNet, short conv, Mamba2.
const RECURRENT_LAYERS: &[char] = &['L', 'C', 'M'];

impl ModelCard {
    pub fn describe(model: &Model) -> ModelCard {
        let md = &model.file.metadata;
        let hp = &model.hparams;
        let mut bytes_per_component = BTreeMap::new();
        let mut quant_mix: BTreeMap<String, TypeUsage> = BTreeMap::new();
        let mut parameters = 0u64;
        // Routed-expert tensors (`*_exps`) count only their used share towards active parameters.
        let experts = model.arch.experts();
        let mut inactive = 0u64;
        for t in model.file.tensor_infos() {
            parameters += t.n_elements() as u64;
            if let Some((n_expert, n_used)) = experts.filter(|_| is_routed_expert(&t.name)) {
                inactive += (t.n_elements() as u64) * (n_expert - n_used) as u64 / n_expert as u64;
            }
            *bytes_per_component
                .entry(component(&t.name).to_string())
                .or_insert(0) += t.n_bytes() as u64;
            let u = quant_mix
                .entry(t.ty.name().to_string())
                .or_insert(TypeUsage {
                    tensors: 0,
                    bytes: 0,
                });
            u.tensors += 1;
            u.bytes += t.n_bytes() as u64;
        }
        let name = md
            .opt_str("general.name")
            .ok()
            .flatten()
            .map(str::to_string)
            .unwrap_or_else(|| {
                model
                    .file
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        let layer_map = model.arch.layer_map();
        let n_attn_layers = layer_map.chars().filter(|c| matches!(c, 'A' | 'S')).count();
        ModelCard {
            name,
            architecture: hp.arch.clone(),
            kind: if layer_map.contains(RECURRENT_LAYERS) {
                "hybrid"
            } else if experts.is_some() {
                "moe"
            } else {
                "dense"
            }
            .into(),
            parameters,
            active_parameters: parameters - inactive,
            file_bytes: model.file.file_bytes(),
            context_length: model.n_ctx as u32,
            layers: hp.n_layer as u32,
            layer_map,
            experts: experts.map_or(0, |e| e.0 as u32),
            experts_used: experts.map_or(0, |e| e.1 as u32),
            has_chat_template: md.get("tokenizer.chat_template").is_some(),
            embedding_length: hp.n_embd as u32,
            heads: hp.n_head as u32,
            kv_heads: hp.n_head_kv as u32,
            head_dim: hp.head_dim as u32,
            vocab_size: hp.n_vocab as u32,
            tokenizer: md
                .opt_str("tokenizer.ggml.model")
                .ok()
                .flatten()
                .unwrap_or("none")
                .to_string(),
            bytes_per_component,
            quant_mix,
            kv_bytes_per_token: (n_attn_layers * 2 * hp.n_head_kv * hp.head_dim * 4) as u64,
            // A fresh state holds no KV rows yet, only the fixed-size recurrent states.
            state_bytes_per_sequence: model.new_state().bytes() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn components_by_name() {
        use super::component;
        assert_eq!(component("token_embd.weight"), "embeddings");
        assert_eq!(component("output.weight"), "output");
        assert_eq!(component("output_norm.weight"), "norms");
        assert_eq!(component("blk.3.attn_q.weight"), "attention");
        assert_eq!(component("blk.3.attn_q_norm.weight"), "norms");
        assert_eq!(component("blk.3.ffn_down.weight"), "ffn");
        assert_eq!(component("rope_freqs.weight"), "other");
    }
}
