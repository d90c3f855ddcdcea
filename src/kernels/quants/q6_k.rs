//! Q6_K: 16 sub-blocks of 16 six-bit quants (values -32..31), `w = d·sc·q` with an i8 scale per
//! sub-block.

use super::q8_k::BlockQ8K;
use super::superblock::{dequantize_sub_blocks, SuperBlock, QK_K};
use crate::kernels::block::{Block, Half};
use crate::kernels::simd::IntDots;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low four bits; see [`BlockQ6K::quants`].
    pub ql: [u8; QK_K / 2],
    /// High two bits, four quants per byte.
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: Half,
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ6K {}

impl BlockQ6K {
    /// Quants in element order. Each half (128 elements) uses 64 `ql` and 32 `qh` bytes; its
    /// four groups of 32 take the low nibbles of `ql[0..32]`, of `ql[32..64]`, then the high
    /// nibbles of both, and bit pairs 0, 2, 4, 6 of `qh[l]`.
    #[inline]
    fn quants(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for (half, out) in q.chunks_exact_mut(128).enumerate() {
            let (ql, qh) = (&self.ql[64 * half..][..64], &self.qh[32 * half..][..32]);
            for (group, out) in out.chunks_exact_mut(32).enumerate() {
                let low_bytes = &ql[32 * (group % 2)..][..32];
                let low_shift = 4 * (group / 2);
                for ((o, &l), &h) in out.iter_mut().zip(low_bytes).zip(qh) {
                    let low = (l >> low_shift) & 0x0F;
                    let high = (h >> (2 * group)) & 3;
                    *o = (low | (high << 4)) as i8 - 32;
                }
            }
        }
        q
    }
}

impl SuperBlock for BlockQ6K {
    fn dequantize(&self, y: &mut [f32; QK_K]) {
        let d = self.d.to_f32();
        dequantize_sub_blocks::<16>(&self.quants(), |s| (d * f32::from(self.scales[s]), 0.0), y);
    }

    fn dot<D: IntDots>(&self, a: &BlockQ8K) -> f32 {
        let scales = self.scales.map(i32::from);
        let isum = D::weighted_dot::<16>(&self.quants(), &a.qs, &scales);
        (self.d.to_f32() * a.d()) * isum as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::superblock::tests::check_simd_matches_scalar;
    use crate::kernels::testing::{check_random_vec_dots, no_extra_tolerance, Rng};
    use crate::kernels::GgmlType;

    fn fix(b: &mut BlockQ6K, r: &mut Rng) {
        b.d = r.scale();
    }

    #[test]
    fn dequantize_known_block() {
        // ql bytes: low nibble 1, high nibble 2 in the first 32 of each 64, 3 and 4 in the next;
        // qh bytes: bit pairs 0, 1, 2, 3. So the four groups of each half are
        // 1 | 0<<4, 3 | 1<<4, 2 | 2<<4, 4 | 3<<4 = 1, 19, 34, 52 (minus 32).
        let ql = std::array::from_fn(|i| if i % 64 < 32 { 0x21 } else { 0x43 });
        let scales = std::array::from_fn(|s| s as i8 - 8);
        let b = BlockQ6K {
            ql,
            qh: [0b1110_0100; 64],
            scales,
            d: Half::from_f32(0.5),
        };
        let mut y = [0f32; QK_K];
        b.dequantize(&mut y);
        let group_quants = [1 - 32, 19 - 32, 34 - 32, 52 - 32];
        for (e, &v) in y.iter().enumerate() {
            let q = group_quants[(e % 128) / 32] as f32;
            let scale = (e / 16) as f32 - 8.0;
            assert_eq!(v, 0.5 * scale * q, "element {e}");
        }
        assert_eq!(y[0], 0.5 * -8.0 * -31.0);
        assert_eq!(y[255], 0.5 * 7.0 * 20.0);
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::Q6_K, fix, no_extra_tolerance);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockQ6K {
                ql: [0xFF; 128],
                qh: [0xFF; 64],
                scales: [i8::MIN; 16],
                d: Half::from_bits(0x7BFF),
            },
            BlockQ6K {
                ql: [0; 128],
                qh: [0; 64],
                scales: [i8::MAX; 16],
                d: Half::from_bits(0x0001),
            },
            BlockQ6K {
                ql: [0x5A; 128],
                qh: [0xC3; 64],
                scales: [-1; 16],
                d: Half::from_bits(0x8000),
            },
        ];
        check_simd_matches_scalar(fix, &edges);
    }
}
