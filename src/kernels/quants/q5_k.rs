//! Q5_K: Q4_K with a fifth quant bit, `w = d·sc·q - dmin·m` with `q` in 0..31.

use super::q4_k::{nibble_quants, ScalesK4};
use super::q8_k::BlockQ8K;
use super::superblock::{SuperBlock, QK_K};
use crate::kernels::block::Block;
use crate::kernels::simd::IntDots;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ5K {
    pub scales: ScalesK4,
    /// The fifth bit of each quant: bit `e / 32` of byte `e % 32`.
    pub qh: [u8; QK_K / 8],
    /// The low four bits, laid out as Q4_K's quants.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ5K {}

impl BlockQ5K {
    #[inline]
    fn quants(&self) -> [i8; QK_K] {
        let mut q = nibble_quants(&self.qs);
        for (sub_block, out) in q.chunks_exact_mut(32).enumerate() {
            for (o, &h) in out.iter_mut().zip(&self.qh) {
                *o |= (((h >> sub_block) & 1) << 4) as i8;
            }
        }
        q
    }
}

impl SuperBlock for BlockQ5K {
    fn dequantize(&self, y: &mut [f32; QK_K]) {
        self.scales.dequantize(&self.quants(), y);
    }

    fn dot<D: IntDots>(&self, a: &BlockQ8K) -> f32 {
        self.scales.dot::<D>(&self.quants(), a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::block::Half;
    use crate::kernels::quants::superblock::tests::{check_simd_matches_scalar, pack_scale_min_k4};
    use crate::kernels::testing::{check_random_vec_dots, no_extra_tolerance, Rng};
    use crate::kernels::GgmlType;

    fn fix(b: &mut BlockQ5K, r: &mut Rng) {
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
        // d = 1, dmin = 0.5, scales s + 1, minimums 2s; low nibbles e % 16 everywhere; fifth bit
        // set in sub-blocks 1, 2 and 7 (bits 1, 2, 7 of every qh byte).
        let packed = pack_scale_min_k4(
            std::array::from_fn(|s| s as u8 + 1),
            std::array::from_fn(|s| 2 * s as u8),
        );
        let b = BlockQ5K {
            scales: scales(0x3C00, 0x3800, packed),
            qh: [0b1000_0110; 32],
            qs: std::array::from_fn(|i| (i % 16) as u8 * 0x11),
        };
        let mut y = [0f32; QK_K];
        b.dequantize(&mut y);
        for (e, &v) in y.iter().enumerate() {
            let s = e / 32;
            let q = (e % 16 + if matches!(s, 1 | 2 | 7) { 16 } else { 0 }) as f32;
            assert_eq!(v, (s + 1) as f32 * q - 0.5 * (2 * s) as f32, "element {e}");
        }
        assert_eq!(y[255], 8.0 * 31.0 - 7.0);
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::Q5_K, fix, no_extra_tolerance);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockQ5K {
                scales: scales(0x7BFF, 0xFBFF, [0xFF; 12]),
                qh: [0xFF; 32],
                qs: [0xFF; 128],
            },
            BlockQ5K {
                scales: scales(0x0001, 0x0000, [0; 12]),
                qh: [0; 32],
                qs: [0; 128],
            },
            BlockQ5K {
                scales: scales(0x8000, 0x03FF, [0x96; 12]),
                qh: [0x5A; 32],
                qs: [0xF0; 128],
            },
        ];
        check_simd_matches_scalar(fix, &edges);
    }
}
