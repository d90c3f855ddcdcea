//! MXFP4 (OCP microscaling FP4): 32 E2M1 values with one shared E8M0 (power of two) scale.

use super::block32::{ScaledBlock32, QK};
use crate::kernels::block::{e8m0_to_f32_half, unpack_nibbles, Block};

/// ggml's `kvalues_mxfp4`: the E2M1 values doubled (0, 0.5, 1, 1.5, 2, 3, 4, 6 and their
/// negatives), so they are integers; the scale is halved to compensate.
pub const KVALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockMXFP4 {
    /// E8M0 scale: 2^(e - 127).
    pub e: u8,
    /// E2M1 codes, laid out as Q4_0's nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockMXFP4>() == 17);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockMXFP4 {}

impl ScaledBlock32 for BlockMXFP4 {
    #[inline]
    fn scale(&self) -> f32 {
        e8m0_to_f32_half(self.e)
    }
    #[inline]
    fn quants(&self) -> [i8; QK] {
        let mut q = [0i8; QK];
        unpack_nibbles(&self.qs, &mut q, |n| KVALUES[usize::from(n & 0x0F)]);
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::block32;
    use crate::kernels::testing::{check_random_vec_dots, no_extra_tolerance, Rng};
    use crate::kernels::GgmlType;

    /// Scales between 2^-8 and 2^8 keep products finite.
    fn fix(b: &mut BlockMXFP4, r: &mut Rng) {
        b.e = 119 + r.below(17) as u8;
    }

    #[test]
    fn dequantize_known_block() {
        // e = 128: scale 2, so the values are the plain E2M1 values times 2.
        let b = BlockMXFP4 {
            e: 128,
            qs: std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4)),
        };
        let bytes: Vec<u8> = [vec![b.e], b.qs.to_vec()].concat();
        let mut y = [0f32; QK];
        block32::dequantize::<BlockMXFP4>(&bytes, &mut y);
        let e2m1 = [
            0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
        ];
        for j in 0..16 {
            assert_eq!(y[j], 2.0 * e2m1[j], "element {j}");
            assert_eq!(y[16 + j], 2.0 * e2m1[15 - j], "element {}", 16 + j);
        }
        // e = 0 is 2^-127 (subnormal), so the value 6 becomes 6·2^-127.
        let bytes = [0u8, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        block32::dequantize::<BlockMXFP4>(&bytes, &mut y);
        assert_eq!(y[0], 6.0 * 2f32.powi(-127));
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::MXFP4, fix, no_extra_tolerance);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockMXFP4 {
                e: 0xFF,
                qs: [0x77; 16],
            },
            BlockMXFP4 {
                e: 0,
                qs: [0xFF; 16],
            },
            BlockMXFP4 {
                e: 1,
                qs: [0x88; 16],
            },
            BlockMXFP4 {
                e: 127,
                qs: [0x7F; 16],
            },
        ];
        block32::tests::check_simd_matches_scalar(fix, &edges);
    }
}
