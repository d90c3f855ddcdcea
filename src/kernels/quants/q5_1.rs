//! Q5_1: 32 five-bit quants with an f16 scale and offset, `w = d·q + m`.

use super::block32::{OffsetBlock32, QK};
use super::q5_0::five_bit_quants;
use crate::kernels::block::{Block, Half};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: Half,
    pub m: Half,
    /// Laid out as in Q5_0.
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ5_1 {}

impl OffsetBlock32 for BlockQ5_1 {
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
        five_bit_quants(self.qh, &self.qs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::block32::{self, tests::q8_1_sum_tolerance};
    use crate::kernels::testing::{check_random_vec_dots, Rng};
    use crate::kernels::GgmlType;

    fn fix(b: &mut BlockQ5_1, r: &mut Rng) {
        b.d = r.scale();
        b.m = r.scale();
    }

    #[test]
    fn dequantize_known_block() {
        // d = 1, m = 0.5, all nibbles 15, fifth bit set for the odd elements: 31.5 and 15.5.
        let b = BlockQ5_1 {
            d: Half::from_f32(1.0),
            m: Half::from_f32(0.5),
            qh: 0xAAAA_AAAAu32.to_le_bytes(),
            qs: [0xFF; 16],
        };
        let bytes: Vec<u8> =
            [b.d.0.to_vec(), b.m.0.to_vec(), b.qh.to_vec(), b.qs.to_vec()].concat();
        let mut y = [0f32; QK];
        block32::dequantize_offset::<BlockQ5_1>(&bytes, &mut y);
        for (e, &v) in y.iter().enumerate() {
            assert_eq!(v, if e % 2 == 1 { 31.5 } else { 15.5 }, "element {e}");
        }
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::Q5_1, fix, q8_1_sum_tolerance::<BlockQ5_1>);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockQ5_1 {
                d: Half::from_bits(0x7BFF),
                m: Half::from_bits(0xFBFF),
                qh: [0xFF; 4],
                qs: [0xFF; 16],
            },
            BlockQ5_1 {
                d: Half::from_bits(0x0001),
                m: Half::from_bits(0x8000),
                qh: [0; 4],
                qs: [0; 16],
            },
            BlockQ5_1 {
                d: Half::from_bits(0x8000),
                m: Half::from_bits(0x03FF),
                qh: [0x3C; 4],
                qs: [0x5A; 16],
            },
        ];
        block32::tests::check_offset_simd_matches_scalar(fix, &edges);
    }
}
