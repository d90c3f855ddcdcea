//! Portable SIMD building blocks (the `wide` crate) shared by the fast kernels, each with its
//! scalar reference twin in [`scalar`]. Kernels are generic over [`IntDots`] so that one body
//! yields both the fast version ([`Wide`]) and the reference version ([`Scalar`]).

use wide::{f32x8, i16x16, i32x8, i8x16, u32x8};

/// The integer dot products the quantized kernels are built from.
pub trait IntDots {
    /// `Σ a_i b_i`; the length is a multiple of 16.
    fn dot(a: &[i8], b: &[i8]) -> i32;
    /// `Σ_s weights[s] · Σ_{i in sub-block s} q_i a_i` over consecutive sub-blocks of `LEN` (a
    /// multiple of 16), for weights in [-128, 128].
    fn weighted_dot<const LEN: usize>(q: &[i8], a: &[i8], weights: &[i32]) -> i32;
}

/// The SIMD implementations.
pub struct Wide;

/// The scalar reference implementations.
pub struct Scalar;

impl IntDots for Wide {
    #[inline]
    fn dot(a: &[i8], b: &[i8]) -> i32 {
        dot_i8(a, b)
    }
    #[inline]
    fn weighted_dot<const LEN: usize>(q: &[i8], a: &[i8], weights: &[i32]) -> i32 {
        weighted_dot_i8::<LEN>(q, a, weights)
    }
}

impl IntDots for Scalar {
    #[inline]
    fn dot(a: &[i8], b: &[i8]) -> i32 {
        scalar::dot_i8(a, b)
    }
    #[inline]
    fn weighted_dot<const LEN: usize>(q: &[i8], a: &[i8], weights: &[i32]) -> i32 {
        scalar::weighted_dot_i8::<LEN>(q, a, weights)
    }
}

/// Sign-extends 16 i8s.
#[inline]
fn widen(x: &[i8]) -> i16x16 {
    i16x16::from_i8x16(i8x16::from_slice_unaligned(x))
}

/// Pairwise products of 16 i8s summed into 8 i32 lanes (exact: at most 2^15 per lane).
#[inline]
fn dot16(a: &[i8], b: &[i8]) -> i32x8 {
    widen(a).dot(widen(b))
}

/// `Σ a_i b_i` of two i8 vectors whose length is a multiple of 16.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    debug_assert!(a.len() == b.len() && a.len().is_multiple_of(16));
    let lanes = a
        .chunks_exact(16)
        .zip(b.chunks_exact(16))
        .fold(i32x8::splat(0), |acc, (a, b)| acc + dot16(a, b));
    lanes.reduce_add()
}

/// `Σ_s weights[s] · (q_s · a_s)` over sub-blocks of `LEN` (a multiple of 16), for weights in
/// [-128, 128] (every format's sub-block scales are): `q·w` then fits in i16, so the weights are
/// applied to the widened quants before the pairwise products, and all sums stay exact in the
/// i32 lanes until the single horizontal sum. The result equals the scalar twin's.
#[inline]
pub fn weighted_dot_i8<const LEN: usize>(q: &[i8], a: &[i8], weights: &[i32]) -> i32 {
    const { assert!(LEN.is_multiple_of(16)) };
    debug_assert!(q.len() == a.len() && q.len() == LEN * weights.len());
    debug_assert!(
        weights.iter().all(|w| w.abs() <= 128),
        "weights out of range"
    );
    let mut acc = i32x8::splat(0);
    for ((q, a), &w) in q.chunks_exact(LEN).zip(a.chunks_exact(LEN)).zip(weights) {
        let w = i16x16::splat(w as i16);
        for (q, a) in q.chunks_exact(16).zip(a.chunks_exact(16)) {
            acc += (widen(q) * w).dot(widen(a));
        }
    }
    acc.reduce_add()
}

/// Widens 8 IEEE halves (as bits) to f32, exactly: the magnitude bits move to the f32
/// positions and a multiplication by 2^112 re-biases the exponent (also turning half
/// subnormals into f32 normals); infinities and NaNs get the f32 all-ones exponent.
#[inline]
pub fn f16x8_to_f32(bits: [u16; 8]) -> f32x8 {
    let h = u32x8::new(bits.map(u32::from));
    let magnitude = h & u32x8::splat(0x7FFF);
    let shifted = magnitude << 13;
    let finite = (f32x8::from_bits(shifted) * f32x8::splat(2f32.powi(112))).to_bits();
    let special = shifted | u32x8::splat(0x7F80_0000);
    let is_special = magnitude.simd_gt(u32x8::splat(0x7BFF));
    let sign = (h & u32x8::splat(0x8000)) << 16;
    f32x8::from_bits(sign | is_special.select(special, finite))
}

pub mod scalar {
    /// Reference twin of [`super::dot_i8`].
    pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        debug_assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum()
    }

    /// Reference twin of [`super::weighted_dot_i8`].
    pub fn weighted_dot_i8<const LEN: usize>(q: &[i8], a: &[i8], weights: &[i32]) -> i32 {
        debug_assert!(q.len() == a.len() && q.len() == LEN * weights.len());
        q.chunks_exact(LEN)
            .zip(a.chunks_exact(LEN))
            .zip(weights)
            .map(|((q, a), &w)| w * dot_i8(q, a))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::Rng;

    #[test]
    fn dot_i8_matches_scalar() {
        let mut rng = Rng::new(3);
        let extremes: Vec<i8> = (0..256).map(|i| [i8::MIN, i8::MAX, 0, -1][i % 4]).collect();
        let all_min = vec![i8::MIN; 256];
        let all_max = vec![i8::MAX; 256];
        for len in [16, 32, 256] {
            let a: Vec<i8> = (0..len).map(|_| rng.next_u64() as i8).collect();
            let b: Vec<i8> = (0..len).map(|_| rng.next_u64() as i8).collect();
            for (x, y) in [
                (&a[..], &b[..]),
                (&all_min[..len], &all_min[..len]),
                (&all_min[..len], &all_max[..len]),
                (&extremes[..len], &a[..]),
            ] {
                assert_eq!(dot_i8(x, y), scalar::dot_i8(x, y));
            }
        }
        assert_eq!(dot_i8(&all_min, &all_min), 256 * 128 * 128);
    }

    #[test]
    fn weighted_dot_i8_matches_scalar() {
        let mut rng = Rng::new(4);
        let q: Vec<i8> = (0..256).map(|_| rng.next_u64() as i8).collect();
        let a: Vec<i8> = (0..256).map(|_| rng.next_u64() as i8).collect();
        let w16: Vec<i32> = (0..16).map(|_| rng.below(257) as i32 - 128).collect();
        let w8: Vec<i32> = (0..8).map(|_| rng.below(64) as i32).collect();
        assert_eq!(
            weighted_dot_i8::<16>(&q, &a, &w16),
            scalar::weighted_dot_i8::<16>(&q, &a, &w16)
        );
        assert_eq!(
            weighted_dot_i8::<32>(&q, &a, &w8),
            scalar::weighted_dot_i8::<32>(&q, &a, &w8)
        );
        // The extremes of the i16 products: weights ±128 on quants of -128.
        let (q, a) = (vec![i8::MIN; 256], vec![i8::MIN; 256]);
        for w in [128, -128] {
            let w = vec![w; 16];
            assert_eq!(weighted_dot_i8::<16>(&q, &a, &w), w[0] * 128 * 128 * 256);
            assert_eq!(
                scalar::weighted_dot_i8::<16>(&q, &a, &w),
                w[0] * 128 * 128 * 256
            );
        }
    }

    #[test]
    fn f16_widening_matches_half_for_every_value() {
        for first in (0..=u16::MAX).step_by(8) {
            let bits: [u16; 8] = std::array::from_fn(|i| first + i as u16);
            let got = f16x8_to_f32(bits).to_array();
            for (b, g) in bits.into_iter().zip(got) {
                let want = half::f16::from_bits(b).to_f32();
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "{b:#06x}: {g} vs {want}"
                );
            }
        }
    }
}
