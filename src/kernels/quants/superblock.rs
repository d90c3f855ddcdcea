//! What the 256-element super-block formats (Q2_K…Q6_K, IQ4_XS) share: the per-block kernel
//! interface, the row loops over it, sub-block dequantization and the 6-bit scale unpacker.
//!
//! Every format's dot follows ggml's generic `ggml_vec_dot_*_q8_K`: exact integer dots per
//! sub-block, combined with the integer sub-block scales (and the Q8_K group sums for the
//! minimums), then scaled once per super-block in f32.

use super::q8_k::BlockQ8K;
use crate::kernels::block::{blocks, Block};
use crate::kernels::simd::{IntDots, Scalar, Wide};

pub const QK_K: usize = 256;

/// A super-block weight format.
pub trait SuperBlock: Block {
    fn dequantize(&self, y: &mut [f32; QK_K]);
    /// The dot with one Q8_K block, with the integer dots of `D`.
    fn dot<D: IntDots>(&self, a: &BlockQ8K) -> f32;
}

pub fn dequantize<B: SuperBlock>(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<B>(src);
    debug_assert_eq!(src.len() * QK_K, dst.len());
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        b.dequantize(y.try_into().expect("chunks of QK_K"));
    }
}

fn vec_dot_with<B: SuperBlock, D: IntDots>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<B>(w), blocks::<BlockQ8K>(a));
    debug_assert!(w.len() * QK_K == n && a.len() == w.len());
    w.iter().zip(a).map(|(w, a)| w.dot::<D>(a)).sum()
}

pub fn vec_dot<B: SuperBlock>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    vec_dot_with::<B, Wide>(n, w, a)
}

pub mod scalar {
    use super::*;

    /// Reference twin of [`super::vec_dot`].
    pub fn vec_dot<B: SuperBlock>(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_with::<B, Scalar>(n, w, a)
    }
}

/// `y = scale·q - min` with `(scale, min) = scale_min(s)` for the elements of sub-block `s` of
/// `LEN` elements (the operation order of ggml's `dequantize_row_*`; a format without minimums
/// passes 0, and `x - 0.0 == x` exactly).
pub fn dequantize_sub_blocks<const LEN: usize>(
    q: &[i8; QK_K],
    scale_min: impl Fn(usize) -> (f32, f32),
    y: &mut [f32; QK_K],
) {
    for (s, (y, q)) in y.chunks_exact_mut(LEN).zip(q.chunks_exact(LEN)).enumerate() {
        let (scale, min) = scale_min(s);
        for (y, &q) in y.iter_mut().zip(q) {
            *y = scale * f32::from(q) - min;
        }
    }
}

/// The 6-bit scale and minimum of sub-block `j < 8` from the 12 bytes Q4_K and Q5_K pack them
/// in (ggml's `get_scale_min_k4`): sub-blocks 0–3 use the low 6 bits of bytes `j` and `j + 4`;
/// sub-blocks 4–7 take their low 4 bits from a nibble of byte `j + 4` and their top 2 bits from
/// the spare top bits of bytes `j - 4` (scale) and `j` (minimum).
#[inline]
pub fn scale_min_k4(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

#[cfg(test)]
pub mod tests {
    //! Checks shared by all super-block formats.
    use super::*;
    use crate::kernels::block::blocks_mut;
    use crate::kernels::quants::q8_k;
    use crate::kernels::testing::{random_activations, random_blocks, Rng};

    /// The inverse of [`scale_min_k4`]: packs 8 six-bit scales and minimums into 12 bytes.
    pub fn pack_scale_min_k4(scales: [u8; 8], mins: [u8; 8]) -> [u8; 12] {
        let mut s = [0u8; 12];
        for j in 0..4 {
            s[j] = scales[j] | ((scales[j + 4] >> 4) << 6);
            s[j + 4] = mins[j] | ((mins[j + 4] >> 4) << 6);
            s[j + 8] = (scales[j + 4] & 0x0F) | ((mins[j + 4] & 0x0F) << 4);
        }
        s
    }

    #[test]
    fn scale_min_k4_round_trips() {
        let mut rng = Rng::new(21);
        for _ in 0..100 {
            let scales: [u8; 8] = std::array::from_fn(|_| rng.below(64) as u8);
            let mins: [u8; 8] = std::array::from_fn(|_| rng.below(64) as u8);
            let packed = pack_scale_min_k4(scales, mins);
            for j in 0..8 {
                assert_eq!(scale_min_k4(j, &packed), (scales[j], mins[j]));
            }
        }
    }

    /// Q8_K rows: one quantized from random values, then edge cases (zero, negative zero, huge,
    /// subnormal and negative scales with extreme quants).
    fn activation_rows(rng: &mut Rng, n_blocks: usize) -> Vec<Vec<u8>> {
        let mut row = vec![0u8; n_blocks * size_of::<BlockQ8K>()];
        q8_k::quantize(&random_activations(rng, n_blocks * QK_K), &mut row);
        let mut rows = vec![row.clone()];
        let alternating: [i8; QK_K] =
            std::array::from_fn(|i| if i % 2 == 0 { i8::MIN } else { i8::MAX });
        let edges = [
            (0.0, [0; QK_K]),
            (-0.0, [3; QK_K]),
            (3e38, [i8::MIN; QK_K]),
            (1e-45, [i8::MAX; QK_K]),
            (-1.0, alternating),
            (1e-30, [-127; QK_K]),
        ];
        for (d, qs) in edges {
            for b in blocks_mut::<BlockQ8K>(&mut row) {
                *b = BlockQ8K::from_quants(qs, d);
            }
            rows.push(row.clone());
        }
        rows
    }

    /// The SIMD `vec_dot` equals its scalar twin bit for bit on random and edge-case blocks.
    pub fn check_simd_matches_scalar<B: SuperBlock>(
        fix: impl Fn(&mut B, &mut Rng),
        edge_weights: &[B],
    ) {
        let mut rng = Rng::new(13);
        let n_blocks = edge_weights.len().max(3);
        let mut edge = vec![0u8; n_blocks * size_of::<B>()];
        for (b, e) in blocks_mut::<B>(&mut edge)
            .iter_mut()
            .zip(edge_weights.iter().cycle())
        {
            *b = *e;
        }
        let weights = [random_blocks::<B>(&mut rng, n_blocks, fix), edge];
        let n = n_blocks * QK_K;
        for w in &weights {
            for a in activation_rows(&mut rng, n_blocks) {
                let (fast, reference) = (vec_dot::<B>(n, w, &a), scalar::vec_dot::<B>(n, w, &a));
                assert_eq!(
                    fast.to_bits(),
                    reference.to_bits(),
                    "simd {fast} vs scalar {reference}"
                );
            }
        }
    }
}
