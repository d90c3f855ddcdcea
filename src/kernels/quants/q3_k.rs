//! Q3_K: 16 sub-blocks of 16 three-bit quants (values -4..3), `w = d·(sc - 32)·q` with a 6-bit
//! scale per sub-block.

use super::q8_k::BlockQ8K;
use super::superblock::{dequantize_sub_blocks, SuperBlock, QK_K};
use crate::kernels::block::{Block, Half};
use crate::kernels::simd::IntDots;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ3K {
    /// The high bit of each quant: bit `e / 32` of byte `e % 32`. A clear bit subtracts 4.
    pub hmask: [u8; QK_K / 8],
    /// The low two bits, laid out like Q2_K's quants.
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales; see [`BlockQ3K::scales`].
    pub scales: [u8; 12],
    pub d: Half,
}
const _: () = assert!(size_of::<BlockQ3K>() == 110);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ3K {}

impl BlockQ3K {
    #[inline]
    fn quants(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for (half, out) in q.chunks_exact_mut(128).enumerate() {
            let bytes = &self.qs[32 * half..][..32];
            for (group, out) in out.chunks_exact_mut(32).enumerate() {
                let high_bit = 1u8 << (4 * half + group);
                for ((o, &b), &m) in out.iter_mut().zip(bytes).zip(&self.hmask) {
                    let low = ((b >> (2 * group)) & 3) as i8;
                    *o = if m & high_bit != 0 { low } else { low - 4 };
                }
            }
        }
        q
    }

    /// The signed sub-block scales (6-bit value - 32): the low 4 bits of scale `j` are nibble
    /// `j / 8` of byte `j % 8`, the high 2 bits are bit pair `j / 4` of byte `8 + j % 4`.
    #[inline]
    fn scales(&self) -> [i8; 16] {
        std::array::from_fn(|j| {
            let low = (self.scales[j % 8] >> (4 * (j / 8))) & 0x0F;
            let high = (self.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            (low | (high << 4)) as i8 - 32
        })
    }
}

impl SuperBlock for BlockQ3K {
    fn dequantize(&self, y: &mut [f32; QK_K]) {
        let (d, scales) = (self.d.to_f32(), self.scales());
        dequantize_sub_blocks::<16>(&self.quants(), |s| (d * f32::from(scales[s]), 0.0), y);
    }

    fn dot<D: IntDots>(&self, a: &BlockQ8K) -> f32 {
        let scales = self.scales().map(i32::from);
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

    /// Inverse of [`BlockQ3K::scales`]: packs sixteen 6-bit values.
    fn pack_scales(v: [u8; 16]) -> [u8; 12] {
        let mut s = [0u8; 12];
        for (j, &v) in v.iter().enumerate() {
            s[j % 8] |= (v & 0x0F) << (4 * (j / 8));
            s[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
        }
        s
    }

    fn fix(b: &mut BlockQ3K, r: &mut Rng) {
        b.d = r.scale();
    }

    #[test]
    fn dequantize_known_block() {
        // Scale of sub-block s: 6-bit value 4·s - 1 for s ≥ 1 (0 for s = 0), i.e. signed 4s - 33.
        let raw: [u8; 16] = std::array::from_fn(|s| if s == 0 { 0 } else { 4 * s as u8 - 1 });
        // Low bits 0,1,2,3 at shifts 0,2,4,6; high bit set only for elements 32..64 and 160..192.
        let mut hmask = [0u8; 32];
        for m in hmask.iter_mut() {
            *m = 0b0010_0010;
        }
        let b = BlockQ3K {
            hmask,
            qs: [0b1110_0100; 64],
            scales: pack_scales(raw),
            d: Half::from_f32(0.5),
        };
        assert_eq!(b.scales()[0], -32);
        assert_eq!(b.scales()[15], 27);
        let mut y = [0f32; QK_K];
        b.dequantize(&mut y);
        for (e, &v) in y.iter().enumerate() {
            let low = ((e % 128) / 32) as i32;
            let q = if (e / 32) % 4 == 1 { low } else { low - 4 };
            let s = e / 16;
            let scale = if s == 0 { -32 } else { 4 * s as i32 - 33 };
            assert_eq!(v, 0.5 * scale as f32 * q as f32, "element {e}");
        }
        assert_eq!(y[0], 0.5 * -32.0 * -4.0);
        assert_eq!(y[40], 0.5 * -25.0 * 1.0);
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::Q3_K, fix, no_extra_tolerance);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockQ3K {
                hmask: [0; 32],
                qs: [0; 64],
                scales: [0; 12],
                d: Half::from_bits(0x7BFF),
            },
            BlockQ3K {
                hmask: [0xFF; 32],
                qs: [0xFF; 64],
                scales: [0xFF; 12],
                d: Half::from_bits(0x0001),
            },
            BlockQ3K {
                hmask: [0xA5; 32],
                qs: [0x1B; 64],
                scales: [0x3C; 12],
                d: Half::from_bits(0x8000),
            },
        ];
        check_simd_matches_scalar(fix, &edges);
    }
}
