//! F32, F16 and BF16 rows: elementwise conversion and f32 dot products.
//!
//! ggml pairs each float weight type with activations of the same type (`vec_dot_type`), so an
//! F16 weight is dotted with an activation rounded to f16 and a BF16 weight with one rounded to
//! bf16; the products are formed in f32.

use crate::kernels::block::{arrays, blocks, blocks_mut, Bf16, Block, F32Le, Half};
use crate::kernels::simd;
use wide::f32x8;

/// A float element type as stored in a row.
pub trait Element: Block {
    fn to_f32(self) -> f32;
    fn from_f32(x: f32) -> Self;
    /// Eight elements widened to f32 lanes.
    #[inline]
    fn lanes(x: &[Self; 8]) -> f32x8 {
        f32x8::new(x.map(Self::to_f32))
    }
}

impl Element for F32Le {
    fn to_f32(self) -> f32 {
        F32Le::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        F32Le::from_f32(x)
    }
}

impl Element for Half {
    fn to_f32(self) -> f32 {
        Half::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        Half::from_f32(x)
    }
    #[inline]
    fn lanes(x: &[Self; 8]) -> f32x8 {
        simd::f16x8_to_f32(x.map(Half::to_bits))
    }
}

impl Element for Bf16 {
    fn to_f32(self) -> f32 {
        Bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        Bf16::from_f32(x)
    }
}

pub fn dequantize<E: Element>(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<E>(src);
    debug_assert_eq!(src.len(), dst.len());
    for (y, &e) in dst.iter_mut().zip(src) {
        *y = e.to_f32();
    }
}

/// Converts an activation row to element type `E` (ggml's `from_float` for the float types).
pub fn quantize<E: Element>(x: &[f32], dst: &mut [u8]) {
    let dst = blocks_mut::<E>(dst);
    debug_assert_eq!(x.len(), dst.len());
    for (e, &v) in dst.iter_mut().zip(x) {
        *e = E::from_f32(v);
    }
}

/// Elements per SIMD step: four independent 8-lane accumulators hide the FMA latency.
const STEP: usize = 32;

/// `Σ w_i a_i` with f32 products and f32 lane accumulators (ggml's SIMD `ggml_vec_dot_f32/f16`
/// do the same; only the summation order differs from the scalar twin).
pub fn vec_dot<E: Element>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<E>(w), blocks::<E>(a));
    debug_assert!(w.len() == n && a.len() == n);
    lane_dot(w, a, E::lanes, E::to_f32)
}

/// `Σ x_i y_i` of two f32 slices of equal length, summed as [`vec_dot`] sums (attention's q·k).
pub fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    lane_dot(x, y, |c| f32x8::new(*c), |v| v)
}

/// The body of [`vec_dot`] and [`dot_f32`]: `lanes` widens eight elements, `to_f32` one.
#[inline(always)]
fn lane_dot<T: Copy>(
    w: &[T],
    a: &[T],
    lanes: impl Fn(&[T; 8]) -> f32x8,
    to_f32: impl Fn(T) -> f32,
) -> f32 {
    let n = w.len().min(a.len());
    let mut acc = [f32x8::splat(0.0); 4];
    for (wc, ac) in arrays::<T, STEP>(w).zip(arrays::<T, STEP>(a)) {
        let (w8, a8) = (arrays::<T, 8>(wc), arrays::<T, 8>(ac));
        for ((acc, w8), a8) in acc.iter_mut().zip(w8).zip(a8) {
            *acc = lanes(w8).mul_add(lanes(a8), *acc);
        }
    }
    let mut sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])).reduce_add();
    for (&w, &a) in w.iter().zip(a).skip(n - n % STEP) {
        sum += to_f32(w) * to_f32(a);
    }
    sum
}

pub mod scalar {
    use super::Element;
    use crate::kernels::block::blocks;

    /// Reference twin of [`super::vec_dot`]: f32 products summed in f64, as ggml's scalar
    /// `ggml_vec_dot_f32/f16/bf16` do.
    pub fn vec_dot<E: Element>(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let (w, a) = (blocks::<E>(w), blocks::<E>(a));
        debug_assert!(w.len() == n && a.len() == n);
        let sum: f64 = w
            .iter()
            .zip(a)
            .map(|(&w, &a)| f64::from(w.to_f32() * a.to_f32()))
            .sum();
        sum as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{
        check_random_vec_dots, no_extra_tolerance, random_activations, Rng,
    };
    use crate::kernels::GgmlType;

    fn encode<E: Element>(x: &[f32]) -> Vec<u8> {
        let mut bytes = vec![0u8; x.len() * size_of::<E>()];
        quantize::<E>(x, &mut bytes);
        bytes
    }

    #[test]
    fn dequantize_known_values() {
        let mut out = [0f32; 3];
        dequantize::<F32Le>(&[0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0, 1, 0, 0, 0], &mut out);
        assert_eq!(out, [1.0, -2.0, f32::from_bits(1)]);
        // f16 0x3C00 = 1, 0xC500 = -5, 0x0001 = 2^-24 (smallest subnormal).
        dequantize::<Half>(&[0x00, 0x3C, 0x00, 0xC5, 0x01, 0x00], &mut out);
        assert_eq!(out, [1.0, -5.0, 2f32.powi(-24)]);
        // bf16 0x3F80 = 1, 0xC0A0 = -5, 0x0001 = 2^-133.
        dequantize::<Bf16>(&[0x80, 0x3F, 0xA0, 0xC0, 0x01, 0x00], &mut out);
        assert_eq!(out, [1.0, -5.0, 2f32.powi(-133)]);
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        // Random bits can be inf or NaN: draw the weights from normal values instead.
        let normal_f32 = |x: &mut F32Le, r: &mut Rng| *x = F32Le::from_f32(r.normal());
        check_random_vec_dots(GgmlType::F32, normal_f32, no_extra_tolerance);
        let normal_half = |h: &mut Half, r: &mut Rng| *h = Half::from_f32(r.normal());
        check_random_vec_dots(GgmlType::F16, normal_half, no_extra_tolerance);
        let normal_bf16 = |h: &mut Bf16, r: &mut Rng| *h = Bf16::from_f32(r.normal());
        check_random_vec_dots(GgmlType::BF16, normal_bf16, no_extra_tolerance);
    }

    fn check_twins<E: Element>(x: &[f32], y: &[f32]) {
        let (w, a) = (encode::<E>(x), encode::<E>(y));
        let n = x.len();
        let fast = vec_dot::<E>(n, &w, &a);
        let reference = scalar::vec_dot::<E>(n, &w, &a);
        let scale: f32 = x.iter().zip(y).map(|(a, b)| (a * b).abs()).sum();
        assert!(
            (fast - reference).abs() <= 1e-5 * scale,
            "n={n}: simd {fast} vs scalar {reference}"
        );
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let mut rng = Rng::new(7);
        // Lengths around the SIMD step exercise the tail loop.
        for n in [0, 1, 7, 31, 32, 33, 64, 100, 256, 1000] {
            let x = random_activations(&mut rng, n);
            let y = random_activations(&mut rng, n);
            check_twins::<F32Le>(&x, &y);
            check_twins::<Half>(&x, &y);
            check_twins::<Bf16>(&x, &y);
        }
        // Edge values within f16 range (zeros, subnormals, the f16 maximum), for all three types.
        let edges = [0.0, -0.0, 6e-8, -1e-5, 65504.0, -3e4, 1.0, -1.0, 0.5, 1e-3];
        let pick =
            |k: usize| -> Vec<f32> { (0..64).map(|i| edges[(i * k + 3) % edges.len()]).collect() };
        let (edge_x, edge_y) = (pick(1), pick(7));
        check_twins::<F32Le>(&edge_x, &edge_y);
        check_twins::<Half>(&edge_x, &edge_y);
        check_twins::<Bf16>(&edge_x, &edge_y);
        // f32 and bf16 extremes beyond the f16 range (products stay finite).
        let wide_edges: Vec<f32> = (0..40)
            .map(|i| [1e-38, -1e15, 1e-30, 3e18][i % 4])
            .collect();
        check_twins::<F32Le>(&wide_edges, &edge_x[..40]);
        check_twins::<Bf16>(&wide_edges, &edge_x[..40]);
    }
}
