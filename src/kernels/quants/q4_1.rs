//! Q4_1: 32 four-bit quants with an f16 scale and offset, `w = d·q + m`.

use super::block32::{OffsetBlock32, QK};
use crate::kernels::block::{unpack_nibbles, Block, Half};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: Half,
    pub m: Half,
    /// Laid out as in Q4_0.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ4_1 {}

impl OffsetBlock32 for BlockQ4_1 {
    #[inline]
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline]
    fn min(&self) -> f32 {
        self.m.to_f32()
    }
    #[inline]
    fn quants(&self) -> [i8; QK] {
        let mut q = [0i8; QK];
        unpack_nibbles(&self.qs, &mut q, |n| n as i8);
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::block32::{self, tests::q8_1_sum_tolerance};
    use crate::kernels::testing::{check_random_vec_dots, Rng};
    use crate::kernels::GgmlType;

    fn fix(b: &mut BlockQ4_1, r: &mut Rng) {
        b.d = r.scale();
        b.m = r.scale();
    }

    #[test]
    fn dequantize_known_block() {
        // d = 0.5, m = -2, nibbles as in the Q4_0 test: element j is j/2 - 2.
        let b = BlockQ4_1 {
            d: Half::from_f32(0.5),
            m: Half::from_f32(-2.0),
            qs: std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4)),
        };
        let bytes: Vec<u8> = [b.d.0.to_vec(), b.m.0.to_vec(), b.qs.to_vec()].concat();
        let mut y = [0f32; QK];
        block32::dequantize_offset::<BlockQ4_1>(&bytes, &mut y);
        for j in 0..16 {
            assert_eq!(y[j], j as f32 * 0.5 - 2.0);
            assert_eq!(y[16 + j], (15 - j) as f32 * 0.5 - 2.0);
        }
        assert_eq!((y[0], y[16]), (-2.0, 5.5));
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::Q4_1, fix, q8_1_sum_tolerance::<BlockQ4_1>);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockQ4_1 {
                d: Half::from_bits(0x7BFF),
                m: Half::from_bits(0xFBFF),
                qs: [0xFF; 16],
            },
            BlockQ4_1 {
                d: Half::from_bits(0x0001),
                m: Half::from_bits(0x8000),
                qs: [0; 16],
            },
            BlockQ4_1 {
                d: Half::from_bits(0x8000),
                m: Half::from_bits(0x03FF),
                qs: [0x5A; 16],
            },
        ];
        block32::tests::check_offset_simd_matches_scalar(fix, &edges);
    }
}
