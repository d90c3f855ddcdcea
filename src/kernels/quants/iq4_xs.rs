//! IQ4_XS: IQ4_NL's non-linear table in 256-element super-blocks, with a 6-bit scale per
//! sub-block of 32: `w = d·(ls - 32)·KVALUES[i]`.

use super::iq4_nl::kvalue;
use super::q8_k::BlockQ8K;
use super::superblock::{dequantize_sub_blocks, SuperBlock, QK_K};
use crate::kernels::block::{unpack_nibbles, Block, Half};
use crate::kernels::simd::IntDots;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ4XS {
    pub d: Half,
    /// Little-endian u16: the top 2 bits of sub-block `s`'s scale are bits `2s..2s+2`.
    pub scales_h: [u8; 2],
    /// The low 4 bits of sub-block `s`'s scale are nibble `s % 2` of byte `s / 2`.
    pub scales_l: [u8; QK_K / 64],
    /// Sixteen bytes per sub-block, laid out as Q4_0's nibbles.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockIQ4XS>() == 136);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockIQ4XS {}

impl BlockIQ4XS {
    /// The signed scales (6-bit value - 32) of the 8 sub-blocks.
    #[inline]
    pub(crate) fn scales(&self) -> [i32; 8] {
        let high = u16::from_le_bytes(self.scales_h);
        std::array::from_fn(|s| {
            let low = (self.scales_l[s / 2] >> (4 * (s % 2))) & 0x0F;
            let top = ((high >> (2 * s)) & 3) as u8;
            i32::from(low | (top << 4)) - 32
        })
    }

    #[inline]
    fn quants(&self) -> [i8; QK_K] {
        let mut q = [0i8; QK_K];
        for (bytes, out) in self.qs.chunks_exact(16).zip(q.chunks_exact_mut(32)) {
            unpack_nibbles(bytes, out, kvalue);
        }
        q
    }
}

impl SuperBlock for BlockIQ4XS {
    fn dequantize(&self, y: &mut [f32; QK_K]) {
        let (d, scales) = (self.d.to_f32(), self.scales());
        dequantize_sub_blocks::<32>(&self.quants(), |s| (d * scales[s] as f32, 0.0), y);
    }

    /// Unlike the K-quants, each sub-block is scaled in f32 (ggml's generic
    /// `ggml_vec_dot_iq4_xs_q8_K`).
    fn dot<D: IntDots>(&self, a: &BlockQ8K) -> f32 {
        let d4d8 = self.d.to_f32() * a.d();
        let q = self.quants();
        let sub_blocks = q.chunks_exact(32).zip(a.qs.chunks_exact(32));
        sub_blocks
            .zip(self.scales())
            .map(|((q, a), ls)| (d4d8 * ls as f32) * D::dot(q, a) as f32)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::iq4_nl::KVALUES;
    use crate::kernels::quants::superblock::tests::check_simd_matches_scalar;
    use crate::kernels::testing::{check_random_vec_dots, no_extra_tolerance, Rng};
    use crate::kernels::GgmlType;

    fn fix(b: &mut BlockIQ4XS, r: &mut Rng) {
        b.d = r.scale();
    }

    #[test]
    fn dequantize_known_block() {
        // Sub-block s gets the 6-bit scale 9s (signed 9s - 32), packed by hand.
        let raw: [u16; 8] = std::array::from_fn(|s| 9 * s as u16);
        let scales_l =
            std::array::from_fn(|i| ((raw[2 * i] & 15) | ((raw[2 * i + 1] & 15) << 4)) as u8);
        let scales_h = (0..8)
            .fold(0u16, |h, s| h | ((raw[s] >> 4) << (2 * s)))
            .to_le_bytes();
        // Byte j of each sub-block: index j (low) and 15 - j (high).
        let qs = std::array::from_fn(|i| (i % 16) as u8 | ((15 - (i % 16) as u8) << 4));
        let b = BlockIQ4XS {
            d: Half::from_f32(0.5),
            scales_h,
            scales_l,
            qs,
        };
        assert_eq!(b.scales(), [-32, -23, -14, -5, 4, 13, 22, 31]);
        let mut y = [0f32; QK_K];
        b.dequantize(&mut y);
        for (e, &v) in y.iter().enumerate() {
            let (s, j) = (e / 32, e % 32);
            let index = if j < 16 { j } else { 31 - j };
            let scale = 0.5 * (9 * s as i32 - 32) as f32;
            assert_eq!(v, scale * f32::from(KVALUES[index]), "element {e}");
        }
        assert_eq!(y[0], -16.0 * -127.0);
        assert_eq!(y[255], 15.5 * -127.0);
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::IQ4_XS, fix, no_extra_tolerance);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockIQ4XS {
                d: Half::from_bits(0x7BFF),
                scales_h: [0xFF; 2],
                scales_l: [0xFF; 4],
                qs: [0; 128],
            },
            BlockIQ4XS {
                d: Half::from_bits(0x0001),
                scales_h: [0; 2],
                scales_l: [0; 4],
                qs: [0xFF; 128],
            },
            BlockIQ4XS {
                d: Half::from_bits(0x8000),
                scales_h: [0xA5; 2],
                scales_l: [0x3C; 4],
                qs: [0x78; 128],
            },
        ];
        check_simd_matches_scalar(fix, &edges);
    }
}
