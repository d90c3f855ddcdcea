//! Q2_K: 16 sub-blocks of 16 two-bit quants, `w = d·sc·q - dmin·m` with 4-bit `sc` and `m` per
//! sub-block.

use super::q8_k::BlockQ8K;
use super::superblock::{dequantize_sub_blocks, SuperBlock, QK_K};
use crate::kernels::block::{Block, Half};
use crate::kernels::simd::IntDots;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ2K {
    /// Per sub-block: scale in the low nibble, minimum in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// Four quants per byte; see [`BlockQ2K::quants`].
    pub qs: [u8; QK_K / 4],
    pub d: Half,
    pub dmin: Half,
}
const _: () = assert!(size_of::<BlockQ2K>() == 84);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ2K {}

impl BlockQ2K {
    /// Quants 0..3 in element order: each half of the block (128 elements) reads its 32 bytes
    /// four times, at bit shifts 0, 2, 4, 6.
    #[inline]
    fn quants(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for (half, out) in q.chunks_exact_mut(128).enumerate() {
            let bytes = &self.qs[32 * half..][..32];
            for (group, out) in out.chunks_exact_mut(32).enumerate() {
                for (o, &b) in out.iter_mut().zip(bytes) {
                    *o = ((b >> (2 * group)) & 3) as i8;
                }
            }
        }
        q
    }
}

impl SuperBlock for BlockQ2K {
    fn dequantize(&self, y: &mut [f32; QK_K]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        let scale_min = |s: usize| {
            let sc = self.scales[s];
            (d * f32::from(sc & 0x0F), dmin * f32::from(sc >> 4))
        };
        dequantize_sub_blocks::<16>(&self.quants(), scale_min, y);
    }

    fn dot<D: IntDots>(&self, a: &BlockQ8K) -> f32 {
        let scales = self.scales.map(|sc| i32::from(sc & 0x0F));
        let isum = D::weighted_dot::<16>(&self.quants(), &a.qs, &scales);
        let summs: i32 = (0..16)
            .map(|j| a.bsum(j) * i32::from(self.scales[j] >> 4))
            .sum();
        let dall = a.d() * self.d.to_f32();
        let dmin = a.d() * self.dmin.to_f32();
        dall * isum as f32 - dmin * summs as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::superblock::tests::check_simd_matches_scalar;
    use crate::kernels::testing::{check_random_vec_dots, no_extra_tolerance, Rng};
    use crate::kernels::GgmlType;

    fn fix(b: &mut BlockQ2K, r: &mut Rng) {
        b.d = r.scale();
        b.dmin = r.scale();
    }

    #[test]
    fn dequantize_known_block() {
        // Sub-block s has scale s % 16 and minimum 15 - s; quant byte i holds 0,1,2,3 at shifts
        // 0,2,4,6 (0b11100100).
        let b = BlockQ2K {
            scales: std::array::from_fn(|s| (s as u8) | ((15 - s as u8) << 4)),
            qs: [0b1110_0100; 64],
            d: Half::from_f32(0.5),
            dmin: Half::from_f32(0.25),
        };
        let mut y = [0f32; QK_K];
        b.dequantize(&mut y);
        // Element e: quant (e % 128) / 32, sub-block e / 16.
        for (e, &v) in y.iter().enumerate() {
            let (q, s) = (((e % 128) / 32) as f32, (e / 16) as f32);
            assert_eq!(v, 0.5 * s * q - 0.25 * (15.0 - s), "element {e}");
        }
        assert_eq!(y[0], -3.75);
        assert_eq!(y[255], 0.5 * 15.0 * 3.0);
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::Q2_K, fix, no_extra_tolerance);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockQ2K {
                scales: [0xFF; 16],
                qs: [0xFF; 64],
                d: Half::from_bits(0x7BFF),
                dmin: Half::from_bits(0xFBFF),
            },
            BlockQ2K {
                scales: [0; 16],
                qs: [0; 64],
                d: Half::from_bits(0x8000),
                dmin: Half::from_bits(0x0000),
            },
            BlockQ2K {
                scales: [0x5A; 16],
                qs: [0x1B; 64],
                d: Half::from_bits(0x0001),
                dmin: Half::from_bits(0x03FF),
            },
        ];
        check_simd_matches_scalar(fix, &edges);
    }
}
