//! IQ4_NL: 32 four-bit indices into a fixed non-linear table, with one f16 scale:
//! `w = d·KVALUES[i]`.

use super::block32::{ScaledBlock32, QK};
use crate::kernels::block::{unpack_nibbles, Block, Half};

/// ggml's `kvalues_iq4nl`: the 16 levels IQ4_NL and IQ4_XS index.
pub const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The table value of a nibble.
#[inline]
pub fn kvalue(nibble: u8) -> i8 {
    KVALUES[usize::from(nibble & 0x0F)]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockIQ4NL {
    pub d: Half,
    /// Indices, laid out as Q4_0's nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockIQ4NL>() == 18);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockIQ4NL {}

impl ScaledBlock32 for BlockIQ4NL {
    #[inline]
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline]
    fn quants(&self) -> [i8; QK] {
        let mut q = [0i8; QK];
        unpack_nibbles(&self.qs, &mut q, kvalue);
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::block32;
    use crate::kernels::testing::{check_random_vec_dots, no_extra_tolerance, Rng};
    use crate::kernels::GgmlType;

    fn fix(b: &mut BlockIQ4NL, r: &mut Rng) {
        b.d = r.scale();
    }

    #[test]
    fn dequantize_known_block() {
        // d = 2, byte j holds index j (low) and 15 - j (high).
        let b = BlockIQ4NL {
            d: Half::from_f32(2.0),
            qs: std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4)),
        };
        let bytes: Vec<u8> = [b.d.0.to_vec(), b.qs.to_vec()].concat();
        let mut y = [0f32; QK];
        block32::dequantize::<BlockIQ4NL>(&bytes, &mut y);
        assert_eq!((y[0], y[7], y[8], y[15]), (-254.0, -20.0, 2.0, 226.0));
        assert_eq!((y[16], y[31]), (226.0, -254.0));
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::IQ4_NL, fix, no_extra_tolerance);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockIQ4NL {
                d: Half::from_bits(0x7BFF),
                qs: [0x00; 16],
            },
            BlockIQ4NL {
                d: Half::from_bits(0xFBFF),
                qs: [0xFF; 16],
            },
            BlockIQ4NL {
                d: Half::from_bits(0x0001),
                qs: [0xF0; 16],
            },
            BlockIQ4NL {
                d: Half::from_bits(0x8000),
                qs: [0x87; 16],
            },
        ];
        block32::tests::check_simd_matches_scalar(fix, &edges);
    }
}
