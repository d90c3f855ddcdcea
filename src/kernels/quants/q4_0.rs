//! Q4_0: 32 four-bit quants with one f16 scale, `w = d·(q - 8)`.

use super::block32::{ScaledBlock32, QK};
use crate::kernels::block::{unpack_nibbles, Block, Half};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: Half,
    /// Element `j < 16` in the low nibble of byte `j`, element `j + 16` in its high nibble.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ4_0 {}

impl ScaledBlock32 for BlockQ4_0 {
    #[inline]
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline]
    fn quants(&self) -> [i8; QK] {
        let mut q = [0i8; QK];
        unpack_nibbles(&self.qs, &mut q, |n| n as i8 - 8);
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::block32;
    use crate::kernels::testing::{check_random_vec_dots, no_extra_tolerance, Rng};
    use crate::kernels::GgmlType;

    fn fix(b: &mut BlockQ4_0, r: &mut Rng) {
        b.d = r.scale();
    }

    #[test]
    fn dequantize_known_block() {
        // d = 0.5, byte j = j | (15 - j) << 4: element j is (j - 8)/2, element 16 + j is (7 - j)/2.
        let b = BlockQ4_0 {
            d: Half::from_f32(0.5),
            qs: std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4)),
        };
        let bytes: Vec<u8> = [b.d.0.to_vec(), b.qs.to_vec()].concat();
        let mut y = [0f32; QK];
        block32::dequantize::<BlockQ4_0>(&bytes, &mut y);
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(y[16 + j], (7.0 - j as f32) * 0.5);
        }
        assert_eq!((y[0], y[15], y[16], y[31]), (-4.0, 3.5, 3.5, -4.0));
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::Q4_0, fix, no_extra_tolerance);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockQ4_0 {
                d: Half::from_bits(0x7BFF),
                qs: [0x00; 16],
            },
            BlockQ4_0 {
                d: Half::from_bits(0xFBFF),
                qs: [0xFF; 16],
            },
            BlockQ4_0 {
                d: Half::from_bits(0x0001),
                qs: [0x0F; 16],
            },
            BlockQ4_0 {
                d: Half::from_bits(0x8000),
                qs: [0x88; 16],
            },
        ];
        block32::tests::check_simd_matches_scalar(fix, &edges);
    }
}
