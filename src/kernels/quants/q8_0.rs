//! Q8_0: 32 × i8 with one f16 scale. Both a weight type and the activation format of Q4_0,
//! Q5_0, Q8_0, IQ4_NL and MXFP4 weights.

use super::block32::{ScaledBlock32, QK};
use crate::kernels::block::{arrays, blocks_mut, Block, Half};
use wide::{f32x8, i16x16, i16x8, i8x16};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: Half,
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ8_0 {}

impl ScaledBlock32 for BlockQ8_0 {
    #[inline]
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline]
    fn quants(&self) -> [i8; QK] {
        self.qs
    }
}

/// The unrounded scale `d = amax/127` of a block and the multiplier `1/d` (0 for an all-zero
/// block), as ggml's `quantize_row_q8_0_ref` computes them. The quants are then `x·(1/d)`
/// rounded half away from zero (C `roundf`).
fn scale_of(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, id)
}

/// Quantizes one block: returns the unrounded f32 scale and the quants (Q8_1 also needs the
/// unrounded scale for its sum).
pub fn quantize_block(x: &[f32; QK]) -> (f32, [i8; QK]) {
    let v: [f32x8; 4] = std::array::from_fn(|k| f32x8::new(std::array::from_fn(|i| x[8 * k + i])));
    // `max` ignores a NaN operand like `f32::max`, so both twins see the same amax.
    let amax = v
        .iter()
        .fold(f32x8::splat(0.0), |m, v| m.max(v.abs()))
        .to_array()
        .into_iter()
        .fold(0.0, f32::max);
    let (d, id) = scale_of(amax);
    // `f32x8::round` rounds half away from zero, like `f32::round`; the rounded values are whole,
    // so truncation and saturating packs are exact conversions.
    let q = v.map(|v| (v * f32x8::splat(id)).round().trunc_int());
    let pack = |lo, hi| {
        let words: i16x16 = wide::bytemuck::cast([
            i16x8::from_i32x8_saturate(lo),
            i16x8::from_i32x8_saturate(hi),
        ]);
        i8x16::from_i16x16_saturate(words).to_array()
    };
    let (lo, hi) = (pack(q[0], q[1]), pack(q[2], q[3]));
    let mut qs = [0i8; QK];
    qs[..16].copy_from_slice(&lo);
    qs[16..].copy_from_slice(&hi);
    (d, qs)
}

/// Quantizes an activation row to Q8_0 (ggml's `quantize_row_q8_0_ref`).
pub fn quantize(x: &[f32], dst: &mut [u8]) {
    quantize_with(x, dst, quantize_block);
}

fn quantize_with(x: &[f32], dst: &mut [u8], quantize_block: fn(&[f32; QK]) -> (f32, [i8; QK])) {
    let dst = blocks_mut::<BlockQ8_0>(dst);
    debug_assert_eq!(dst.len() * QK, x.len());
    for (y, x) in dst.iter_mut().zip(arrays::<f32, QK>(x)) {
        let (d, qs) = quantize_block(x);
        *y = BlockQ8_0 {
            d: Half::from_f32(d),
            qs,
        };
    }
}

pub mod scalar {
    use super::*;

    /// Reference twin of [`super::quantize_block`].
    pub fn quantize_block(x: &[f32; QK]) -> (f32, [i8; QK]) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (d, id) = scale_of(amax);
        (d, x.map(|v| (v * id).round() as i8))
    }

    /// Reference twin of [`super::quantize`].
    pub fn quantize(x: &[f32], dst: &mut [u8]) {
        quantize_with(x, dst, quantize_block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::block::blocks;
    use crate::kernels::quants::block32;
    use crate::kernels::testing::{
        check_random_vec_dots, no_extra_tolerance, random_activations, Rng,
    };
    use crate::kernels::GgmlType;

    #[test]
    fn dequantize_known_block() {
        let mut bytes = [0u8; 34];
        bytes[..2].copy_from_slice(&0x3800u16.to_le_bytes()); // 0.5
        bytes[2] = 0x80; // -128
        bytes[33] = 7;
        let mut out = [0f32; 32];
        block32::dequantize::<BlockQ8_0>(&bytes, &mut out);
        assert_eq!(out[0], -64.0);
        assert_eq!(out[1], 0.0);
        assert_eq!(out[31], 3.5);
    }

    #[test]
    fn quantize_rounds_half_away_from_zero() {
        // amax 127 gives d = 1 and id = 1, so quants are the rounded inputs.
        let mut x = [0f32; 32];
        x[..7].copy_from_slice(&[127.0, 2.5, -2.5, 0.5, -0.5, 1.49, -126.6]);
        let mut bytes = [0u8; 34];
        quantize(&x, &mut bytes);
        let b = blocks::<BlockQ8_0>(&bytes)[0];
        assert_eq!(b.d.to_f32(), 1.0);
        assert_eq!(b.qs[..8], [127, 3, -3, 1, -1, 1, -127, 0]);

        // amax 31 gives d = 31/127: the largest magnitude maps to ±127, the rest scale linearly.
        let x: [f32; 32] = std::array::from_fn(|i| {
            if i % 2 == 1 {
                i as f32 - 32.0
            } else {
                i as f32
            }
        });
        quantize(&x, &mut bytes);
        let b = blocks::<BlockQ8_0>(&bytes)[0];
        assert_eq!(b.d, Half::from_f32(31.0 / 127.0));
        assert_eq!(b.qs[1], -127);
        assert_eq!(b.qs[30], 123); // 30·127/31 = 122.9
        assert_eq!(b.qs[4], 16); // 4·127/31 = 16.39
        assert_eq!(b.qs[31], -4); // -127/31 = -4.1

        quantize(&[0.0; 32], &mut bytes);
        assert_eq!(blocks::<BlockQ8_0>(&bytes)[0], BlockQ8_0::default());
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(
            GgmlType::Q8_0,
            |b: &mut BlockQ8_0, r| b.d = r.scale(),
            no_extra_tolerance,
        );
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockQ8_0 {
                d: Half::from_bits(0x7BFF),
                qs: [i8::MIN; QK],
            },
            BlockQ8_0 {
                d: Half::from_bits(0x0001),
                qs: [i8::MAX; QK],
            },
            BlockQ8_0 {
                d: Half::from_bits(0x8000),
                qs: [-1; QK],
            },
            BlockQ8_0 {
                d: Half::from_bits(0x0000),
                qs: [0; QK],
            },
        ];
        block32::tests::check_simd_matches_scalar(|b: &mut BlockQ8_0, r| b.d = r.scale(), &edges);
    }

    /// Activation blocks that stress the quantizer: exact halves, ±0, subnormal and huge
    /// magnitudes (whose inverse scale overflows), a lone outlier, values just below a rounding
    /// tie, NaN and infinity.
    fn edge_activation_blocks(rng: &mut Rng) -> Vec<[f32; QK]> {
        let mut out = vec![[0.0; QK], [-0.0; QK]];
        out.push(std::array::from_fn(|i| i as f32 - 15.5));
        out.push(std::array::from_fn(|i| {
            (i as f32 - 16.0) * 0.5 + if i == 0 { 55.5 } else { 0.0 }
        }));
        out.push(std::array::from_fn(
            |i| if i % 3 == 0 { 1e-40 } else { -2e-45 },
        ));
        out.push(std::array::from_fn(|i| {
            if i == 7 {
                3e38
            } else {
                -1e30 * i as f32
            }
        }));
        out.push(std::array::from_fn(|i| {
            if i % 2 == 0 {
                0.5f32.next_down()
            } else {
                127.0
            }
        }));
        out.push(std::array::from_fn(|i| {
            [127.0, 2.5, -2.5, 0.5, -0.5, -127.0, 1.5, -0.0][i % 8]
        }));
        out.push(std::array::from_fn(|i| {
            [1.0, f32::NAN, -3.0, f32::INFINITY, 0.0][i % 5]
        }));
        out.push(std::array::from_fn(|i| [1.0, -f32::NAN, -3.0][i % 3]));
        for _ in 0..64 {
            let x = random_activations(rng, QK);
            out.push(std::array::from_fn(|i| x[i]));
        }
        out
    }

    #[test]
    fn simd_quantize_matches_scalar() {
        let mut rng = Rng::new(5);
        for x in edge_activation_blocks(&mut rng) {
            let (fast, reference) = (quantize_block(&x), scalar::quantize_block(&x));
            assert_eq!(fast.0.to_bits(), reference.0.to_bits(), "{x:?}");
            assert_eq!(fast.1, reference.1, "{x:?}");
        }
        // `f32x8::round` against `f32::round` on every tie between -130 and 130 and its neighbours.
        let ties: Vec<f32> = (-260..=260).map(|i| i as f32 * 0.5).collect();
        for v in ties.iter().flat_map(|&t| [t.next_down(), t, t.next_up()]) {
            let lanes = f32x8::splat(v).round().to_array();
            assert_eq!(lanes[0].to_bits(), v.round().to_bits(), "{v}");
        }
    }
}
