//! Q8_K: the activation format of the K-quants and IQ4_XS. 256 × i8 with an f32 scale and the
//! sums of each group of 16 quants (`bsums`), which apply the weights' per-sub-block minimums.

use super::superblock::QK_K;
use crate::kernels::block::{arrays, blocks, blocks_mut, Block};
use wide::{f32x8, i16x16, i16x8, i32x8, i8x16, u32x8};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ8K {
    /// f32, little-endian.
    pub d: [u8; 4],
    pub qs: [i8; QK_K],
    /// i16 little-endian sums of `qs` in groups of 16.
    pub bsums: [[u8; 2]; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8K>() == 292);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ8K {}

impl BlockQ8K {
    const ZERO: BlockQ8K = BlockQ8K {
        d: [0; 4],
        qs: [0; QK_K],
        bsums: [[0; 2]; QK_K / 16],
    };

    #[inline]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    #[inline]
    pub fn bsum(&self, group: usize) -> i32 {
        i16::from_le_bytes(self.bsums[group]).into()
    }

    /// The block of quants `qs` with scale `d`, and their group sums.
    pub fn from_quants(qs: [i8; QK_K], d: f32) -> BlockQ8K {
        let mut bsums = [[0u8; 2]; QK_K / 16];
        for (sum, group) in bsums.iter_mut().zip(qs.chunks_exact(16)) {
            // At most 16·128 in magnitude: fits in i16.
            *sum = group
                .iter()
                .map(|&q| i16::from(q))
                .sum::<i16>()
                .to_le_bytes();
        }
        BlockQ8K {
            d: d.to_le_bytes(),
            qs,
            bsums,
        }
    }
}

/// Round to nearest, ties to even, by ggml's `nearest_int` trick: adding 1.5·2^23 leaves the
/// rounded integer in the low mantissa bits. Exact for |v| < 2^22, which holds here.
fn nearest_int(v: f32) -> i32 {
    ((v + 12_582_912.0).to_bits() & 0x007F_FFFF) as i32 - 0x0040_0000
}

/// Quantizes one block (ggml's `quantize_row_q8_K_ref`): the scale comes from the *signed* value
/// of largest magnitude (the first one on ties), `iscale = -127/max`, so that value maps to -127.
pub fn quantize_block(x: &[f32; QK_K]) -> BlockQ8K {
    let lanes = |k: usize| f32x8::new(std::array::from_fn(|i| x[8 * k + i]));
    let amax = (0..QK_K / 8)
        .fold(f32x8::splat(0.0), |m, k| m.max(lanes(k).abs()))
        .to_array()
        .into_iter()
        .fold(0.0, f32::max);
    // The first element attaining the largest magnitude, as the scalar scan finds it.
    let Some(&max) = x.iter().find(|v| amax > 0.0 && v.abs() == amax) else {
        return BlockQ8K::ZERO;
    };
    let iscale = -127.0 / max;
    let quantize8 = |k: usize| {
        let shifted = lanes(k) * f32x8::splat(iscale) + f32x8::splat(12_582_912.0);
        let rounded = (shifted.to_bits() & u32x8::splat(0x007F_FFFF)).cast_signed()
            - i32x8::splat(0x0040_0000);
        rounded.min(i32x8::splat(127))
    };
    // Truncating packs wrap like the scalar `as i8`; only a scale that overflows to infinity
    // (|max| below ~1e-37) puts quants outside [-127, 127], and both twins then wrap alike.
    let mut qs = [0i8; QK_K];
    for (k, out) in qs.chunks_exact_mut(16).enumerate() {
        let words = [
            i16x8::from_i32x8_truncate(quantize8(2 * k)),
            i16x8::from_i32x8_truncate(quantize8(2 * k + 1)),
        ];
        out.copy_from_slice(
            &i8x16::from_i16x16_truncate(wide::bytemuck::cast::<_, i16x16>(words)).to_array(),
        );
    }
    BlockQ8K::from_quants(qs, 1.0 / iscale)
}

/// Quantizes an activation row to Q8_K.
pub fn quantize(x: &[f32], dst: &mut [u8]) {
    quantize_with(x, dst, quantize_block);
}

fn quantize_with(x: &[f32], dst: &mut [u8], quantize_block: fn(&[f32; QK_K]) -> BlockQ8K) {
    let dst = blocks_mut::<BlockQ8K>(dst);
    debug_assert_eq!(dst.len() * QK_K, x.len());
    for (y, x) in dst.iter_mut().zip(arrays::<f32, QK_K>(x)) {
        *y = quantize_block(x);
    }
}

/// `d·q` per element.
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<BlockQ8K>(src);
    debug_assert_eq!(src.len() * QK_K, dst.len());
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = d * f32::from(q);
        }
    }
}

pub mod scalar {
    use super::*;

    /// Reference twin of [`super::quantize_block`].
    pub fn quantize_block(x: &[f32; QK_K]) -> BlockQ8K {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            return BlockQ8K::ZERO;
        }
        let iscale = -127.0 / max;
        // Wrapping `as i8`, like ggml's int8 store (see the SIMD twin for when it wraps).
        BlockQ8K::from_quants(
            x.map(|v| nearest_int(iscale * v).min(127) as i8),
            1.0 / iscale,
        )
    }

    /// Reference twin of [`super::quantize`].
    pub fn quantize(x: &[f32], dst: &mut [u8]) {
        quantize_with(x, dst, quantize_block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{random_activations, Rng};

    fn block_of(prefix: &[f32]) -> [f32; QK_K] {
        let mut x = [0f32; QK_K];
        x[..prefix.len()].copy_from_slice(prefix);
        x
    }

    #[test]
    fn quantize_uses_signed_max_and_ties_to_even() {
        // max = -127: iscale = 1, d = 1, quants are the inputs rounded half to even.
        let b = quantize_block(&block_of(&[-127.0, 2.5, -2.5, 0.5, 1.5, -1.5, 3.5, 126.6]));
        assert_eq!(b.d(), 1.0);
        assert_eq!(b.qs[..9], [-127, 2, -2, 0, 2, -2, 4, 127, 0]);
        assert_eq!(b.bsum(0), -127 + 2 - 2 + 2 - 2 + 4 + 127);
        assert_eq!(b.bsum(1), 0);

        // A positive max maps to -127 and gives a negative scale.
        let b = quantize_block(&block_of(&[0.0, 4.0, -2.0]));
        assert_eq!(b.d(), -4.0 / 127.0);
        assert_eq!(b.qs[..3], [0, -127, 64]); // -2·(-31.75) = 63.5 → 64 (even)

        // Equal magnitudes: the first one decides the sign.
        let b = quantize_block(&block_of(&[-4.0, 4.0]));
        assert!(b.d() > 0.0);
        assert_eq!(b.qs[..2], [-127, 127]);

        let b = quantize_block(&[-0.0; QK_K]);
        assert_eq!(b, BlockQ8K::ZERO);
    }

    #[test]
    fn dequantize_known_block() {
        let mut bytes = vec![0u8; 292];
        bytes[..4].copy_from_slice(&0.25f32.to_le_bytes());
        bytes[4] = (-128i8) as u8;
        bytes[259] = 5;
        let mut out = vec![0f32; 256];
        dequantize(&bytes, &mut out);
        assert_eq!((out[0], out[1], out[255]), (-32.0, 0.0, 1.25));
    }

    /// Blocks that stress the quantizer: ±0, equal magnitudes of both signs, exact ties, subnormal
    /// and huge magnitudes, NaN and infinity, and random values.
    fn edge_blocks(rng: &mut Rng) -> Vec<[f32; QK_K]> {
        let mut out = vec![[0.0; QK_K], [-0.0; QK_K]];
        out.push(std::array::from_fn(|i| if i % 2 == 0 { 3.0 } else { -3.0 }));
        out.push(std::array::from_fn(|i| if i % 2 == 0 { -3.0 } else { 3.0 }));
        out.push(std::array::from_fn(|i| (i as f32 - 127.0) * 0.5));
        out.push(std::array::from_fn(|i| {
            [-127.0, 2.5, -2.5, 0.5, -0.5, 1.5, 126.5, -0.0][i % 8]
        }));
        out.push(std::array::from_fn(
            |i| if i % 5 == 0 { 1e-42 } else { -3e-45 },
        ));
        out.push(std::array::from_fn(|i| {
            if i == 200 {
                -3e38
            } else {
                1e37 * (i % 7) as f32
            }
        }));
        out.push(std::array::from_fn(|i| {
            [1.0, f32::NAN, -2.0, f32::INFINITY][i % 4]
        }));
        out.push(std::array::from_fn(|i| [1.0, -f32::NAN, -2.0][i % 3]));
        out.push(std::array::from_fn(|i| if i == 9 { 5.0 } else { f32::NAN }));
        for _ in 0..16 {
            let x = random_activations(rng, QK_K);
            out.push(std::array::from_fn(|i| x[i]));
        }
        out
    }

    #[test]
    fn simd_quantize_matches_scalar() {
        let mut rng = Rng::new(9);
        for x in edge_blocks(&mut rng) {
            assert_eq!(
                quantize_block(&x),
                scalar::quantize_block(&x),
                "{:?}",
                &x[..8]
            );
        }
    }
}
