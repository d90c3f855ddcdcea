//! Q4_K: 8 sub-blocks of 32 four-bit quants, `w = d·sc·q - dmin·m` with 6-bit `sc` and `m` per
//! sub-block packed into 12 bytes. Q5_K shares the scale layout and the kernels here.

use super::q8_k::BlockQ8K;
use super::superblock::{dequantize_sub_blocks, scale_min_k4, SuperBlock, QK_K};
use crate::kernels::block::{unpack_nibbles, Block, Half};
use crate::kernels::simd::IntDots;

/// The super-block scale, minimum scale and eight packed 6-bit sub-block scales and minimums
/// that open both Q4_K and Q5_K blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ScalesK4 {
    pub d: Half,
    pub dmin: Half,
    /// See [`scale_min_k4`].
    pub scales: [u8; 12],
}

impl ScalesK4 {
    /// `w = d·sc·q - dmin·m` over 8 sub-blocks of 32.
    pub(super) fn dequantize(&self, q: &[i8; QK_K], y: &mut [f32; QK_K]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        let scale_min = |s: usize| {
            let (sc, m) = scale_min_k4(s, &self.scales);
            (d * f32::from(sc), dmin * f32::from(m))
        };
        dequantize_sub_blocks::<32>(q, scale_min, y);
    }

    /// The dot with a Q8_K block: the minimums apply through the Q8_K group sums (two groups of
    /// 16 per sub-block).
    pub(super) fn dot<D: IntDots>(&self, q: &[i8; QK_K], a: &BlockQ8K) -> f32 {
        self.dot_by(a, |scales| D::weighted_dot::<32>(q, &a.qs, scales))
    }

    /// [`Self::dot`] with the integer part `Σ_s scales[s]·(q_s·a_s)` computed by `isum` (so
    /// the per-ISA kernels share the scale handling and the f32 steps).
    #[inline]
    pub(crate) fn dot_by(&self, a: &BlockQ8K, isum: impl FnOnce(&[i32; 8]) -> i32) -> f32 {
        let (mut scales, mut summs) = ([0i32; 8], 0i32);
        for (s, scale) in scales.iter_mut().enumerate() {
            let (sc, m) = scale_min_k4(s, &self.scales);
            *scale = i32::from(sc);
            summs += i32::from(m) * (a.bsum(2 * s) + a.bsum(2 * s + 1));
        }
        let isum = isum(&scales);
        let d = self.d.to_f32() * a.d();
        let dmin = self.dmin.to_f32() * a.d();
        d * isum as f32 - dmin * summs as f32
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ4K {
    pub scales: ScalesK4,
    /// Each 64 elements take 32 bytes: low nibbles first, then high nibbles.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ4K {}

/// The 4-bit quants of Q4_K and the low bits of Q5_K's, in element order.
#[inline]
pub(super) fn nibble_quants(qs: &[u8; QK_K / 2]) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for (bytes, out) in qs.chunks_exact(32).zip(q.chunks_exact_mut(64)) {
        unpack_nibbles(bytes, out, |n| n as i8);
    }
    q
}

impl SuperBlock for BlockQ4K {
    fn dequantize(&self, y: &mut [f32; QK_K]) {
        self.scales.dequantize(&nibble_quants(&self.qs), y);
    }

    fn dot<D: IntDots>(&self, a: &BlockQ8K) -> f32 {
        self.scales.dot::<D>(&nibble_quants(&self.qs), a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::superblock::tests::{check_simd_matches_scalar, pack_scale_min_k4};
    use crate::kernels::testing::{check_random_vec_dots, no_extra_tolerance, Rng};
    use crate::kernels::GgmlType;

    fn fix(b: &mut BlockQ4K, r: &mut Rng) {
        b.scales.d = r.scale();
        b.scales.dmin = r.scale();
    }

    fn scales(d: u16, dmin: u16, packed: [u8; 12]) -> ScalesK4 {
        ScalesK4 {
            d: Half::from_bits(d),
            dmin: Half::from_bits(dmin),
            scales: packed,
        }
    }

    #[test]
    fn dequantize_known_block() {
        // Sub-block s: scale 7s + 5, minimum 63 - 8s (both use the high bits for s ≥ 4);
        // d = 0.25, dmin = 0.125.
        let packed = pack_scale_min_k4(
            std::array::from_fn(|s| 7 * s as u8 + 5),
            std::array::from_fn(|s| 63 - 8 * s as u8),
        );
        // Byte i of each 32-byte group: low nibble i % 16, high nibble 15 - i % 16.
        let qs = std::array::from_fn(|i| (i % 16) as u8 | ((15 - (i % 16) as u8) << 4));
        let b = BlockQ4K {
            scales: scales(0x3400, 0x3000, packed),
            qs,
        };
        let mut y = [0f32; QK_K];
        b.dequantize(&mut y);
        for (e, &v) in y.iter().enumerate() {
            let s = e / 32;
            let q = if s % 2 == 0 { e % 16 } else { 15 - e % 16 } as f32;
            let want = 0.25 * (7 * s + 5) as f32 * q - 0.125 * (63 - 8 * s) as f32;
            assert_eq!(v, want, "element {e}");
        }
        assert_eq!(y[0], -7.875);
        assert_eq!(y[255], -0.125 * 7.0);
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::Q4_K, fix, no_extra_tolerance);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockQ4K {
                scales: scales(0x7BFF, 0x7BFF, [0xFF; 12]),
                qs: [0xFF; 128],
            },
            BlockQ4K {
                scales: scales(0x0001, 0x8001, [0; 12]),
                qs: [0; 128],
            },
            BlockQ4K {
                scales: scales(0x8000, 0x03FF, [0xC3; 12]),
                qs: [0x0F; 128],
            },
        ];
        check_simd_matches_scalar(fix, &edges);
    }
}
