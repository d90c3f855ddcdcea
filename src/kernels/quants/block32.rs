//! The two families of 32-element weight blocks and their shared kernels.
//!
//! - [`ScaledBlock32`] (Q4_0, Q5_0, Q8_0, IQ4_NL, MXFP4): `w = d·q`, dotted with Q8_0
//!   activations as `(d_w·d_a)·Σ q_w q_a` per block.
//! - [`OffsetBlock32`] (Q4_1, Q5_1): `w = d·q + m`, dotted with Q8_1 activations as
//!   `(d_w·d_a)·Σ q_w q_a + m·s_a`, where the activation block carries `s_a = d_a·Σ q_a`.
//!
//! This is ggml's generic `ggml_vec_dot_*_q8_0` / `*_q8_1` arithmetic: exact integer sums per
//! block, one f32 scale product per block, blocks summed in order.

use super::q8_0::BlockQ8_0;
use super::q8_1::BlockQ8_1;
use crate::kernels::block::{blocks, Block};
use crate::kernels::simd::{IntDots, Scalar, Wide};

pub const QK: usize = 32;

/// A 32-element block of `w = d·q` with small integer quants.
pub trait ScaledBlock32: Block {
    fn scale(&self) -> f32;
    /// The integer quants in element order.
    fn quants(&self) -> [i8; QK];
}

/// A 32-element block of `w = d·q + m` with small non-negative integer quants.
pub trait OffsetBlock32: Block {
    fn scale(&self) -> f32;
    fn min(&self) -> f32;
    /// The integer quants in element order.
    fn quants(&self) -> [i8; QK];
}

pub fn dequantize<B: ScaledBlock32>(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<B>(src);
    debug_assert_eq!(src.len() * QK, dst.len());
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.scale();
        for (y, q) in y.iter_mut().zip(b.quants()) {
            *y = f32::from(q) * d;
        }
    }
}

pub fn dequantize_offset<B: OffsetBlock32>(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<B>(src);
    debug_assert_eq!(src.len() * QK, dst.len());
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (b.scale(), b.min());
        for (y, q) in y.iter_mut().zip(b.quants()) {
            *y = f32::from(q) * d + m;
        }
    }
}

/// Dot of a row of `B` with a Q8_0 row.
fn dot_q8_0<B: ScaledBlock32, D: IntDots>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<B>(w), blocks::<BlockQ8_0>(a));
    debug_assert!(w.len() * QK == n && a.len() == w.len());
    w.iter()
        .zip(a)
        .map(|(w, a)| (w.scale() * a.d.to_f32()) * D::dot(&w.quants(), &a.qs) as f32)
        .sum()
}

/// Dot of a row of `B` with a Q8_1 row.
fn dot_q8_1<B: OffsetBlock32, D: IntDots>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<B>(w), blocks::<BlockQ8_1>(a));
    debug_assert!(w.len() * QK == n && a.len() == w.len());
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            let sumi = D::dot(&w.quants(), &a.qs) as f32;
            (w.scale() * a.d.to_f32()) * sumi + w.min() * a.s.to_f32()
        })
        .sum()
}

pub fn vec_dot<B: ScaledBlock32>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot_q8_0::<B, Wide>(n, w, a)
}

pub fn vec_dot_offset<B: OffsetBlock32>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot_q8_1::<B, Wide>(n, w, a)
}

pub mod scalar {
    use super::*;

    /// Reference twin of [`super::vec_dot`].
    pub fn vec_dot<B: ScaledBlock32>(n: usize, w: &[u8], a: &[u8]) -> f32 {
        dot_q8_0::<B, Scalar>(n, w, a)
    }

    /// Reference twin of [`super::vec_dot_offset`].
    pub fn vec_dot_offset<B: OffsetBlock32>(n: usize, w: &[u8], a: &[u8]) -> f32 {
        dot_q8_1::<B, Scalar>(n, w, a)
    }
}

#[cfg(test)]
pub mod tests {
    //! Checks shared by the block types of both families.
    use super::*;
    use crate::kernels::block::{blocks_mut, Half};
    use crate::kernels::quantize_activation;
    use crate::kernels::testing::{random_activations, random_blocks, Rng};
    use crate::kernels::GgmlType;

    /// Bound on the error of the `m·s` term from the f16 rounding of `s` (and of `d` inside it):
    /// a relative 2^-10 of `|m·s|` per block.
    pub fn q8_1_sum_tolerance<B: OffsetBlock32>(w: &[u8], act: &[u8]) -> f64 {
        blocks::<B>(w)
            .iter()
            .zip(blocks::<BlockQ8_1>(act))
            .map(|(w, a)| f64::from((w.min() * a.s.to_f32()).abs()) * 2f64.powi(-10))
            .sum()
    }

    /// Scale bits and quant values for edge-case activation blocks: zero, negative zero, the
    /// largest f16, the smallest subnormal and the largest subnormal, the smallest normal, with
    /// extreme quants.
    const EDGE_ACTIVATIONS: [(u16, i8); 7] = [
        (0x0000, 0),
        (0x8000, 5),
        (0x7BFF, i8::MIN),
        (0x7BFF, i8::MAX),
        (0x0001, i8::MAX),
        (0x03FF, i8::MIN),
        (0x0400, 1),
    ];

    /// A random activation row of `act_ty`, then one row per edge case, each block set by `set`.
    fn activation_rows<A: Block>(
        rng: &mut Rng,
        act_ty: GgmlType,
        n_blocks: usize,
        set: fn(&mut A, Half, i8),
    ) -> Vec<Vec<u8>> {
        let mut row = vec![0u8; n_blocks * size_of::<A>()];
        quantize_activation(act_ty, &random_activations(rng, n_blocks * QK), &mut row);
        let mut rows = vec![row.clone()];
        for (d, q) in EDGE_ACTIVATIONS {
            for b in blocks_mut::<A>(&mut row) {
                set(b, Half::from_bits(d), q);
            }
            rows.push(row.clone());
        }
        rows
    }

    /// Random weight blocks, and a row cycling through `edge_weights`.
    fn weight_rows<B: Block>(
        rng: &mut Rng,
        n_blocks: usize,
        fix: impl Fn(&mut B, &mut Rng),
        edge_weights: &[B],
    ) -> Vec<Vec<u8>> {
        let mut edge = vec![0u8; n_blocks * size_of::<B>()];
        for (b, e) in blocks_mut::<B>(&mut edge)
            .iter_mut()
            .zip(edge_weights.iter().cycle())
        {
            *b = *e;
        }
        vec![random_blocks::<B>(rng, n_blocks, fix), edge]
    }

    type VecDot = fn(usize, &[u8], &[u8]) -> f32;

    /// The fast kernel equals its scalar twin bit for bit: the integer sums are exact and the f32
    /// steps are the same.
    fn assert_twins_agree(
        n_blocks: usize,
        weights: &[Vec<u8>],
        acts: &[Vec<u8>],
        fast: VecDot,
        reference: VecDot,
    ) {
        for w in weights {
            for a in acts {
                let (f, r) = (fast(n_blocks * QK, w, a), reference(n_blocks * QK, w, a));
                assert_eq!(f.to_bits(), r.to_bits(), "simd {f} vs scalar {r}");
            }
        }
    }

    pub fn check_simd_matches_scalar<B: ScaledBlock32>(
        fix: impl Fn(&mut B, &mut Rng),
        edge_weights: &[B],
    ) {
        let mut rng = Rng::new(11);
        let n_blocks = edge_weights.len().max(4);
        let weights = weight_rows(&mut rng, n_blocks, fix, edge_weights);
        let set = |b: &mut BlockQ8_0, d, q| {
            b.d = d;
            b.qs = [q; QK];
        };
        let acts = activation_rows(&mut rng, GgmlType::Q8_0, n_blocks, set);
        assert_twins_agree(
            n_blocks,
            &weights,
            &acts,
            vec_dot::<B>,
            scalar::vec_dot::<B>,
        );
    }

    pub fn check_offset_simd_matches_scalar<B: OffsetBlock32>(
        fix: impl Fn(&mut B, &mut Rng),
        edge_weights: &[B],
    ) {
        let mut rng = Rng::new(12);
        let n_blocks = edge_weights.len().max(4);
        let weights = weight_rows(&mut rng, n_blocks, fix, edge_weights);
        let set = |b: &mut BlockQ8_1, d, q| {
            b.d = d;
            b.s = d;
            b.qs = [q; QK];
        };
        let acts = activation_rows(&mut rng, GgmlType::Q8_1, n_blocks, set);
        assert_twins_agree(
            n_blocks,
            &weights,
            &acts,
            vec_dot_offset::<B>,
            scalar::vec_dot_offset::<B>,
        );
    }
}
