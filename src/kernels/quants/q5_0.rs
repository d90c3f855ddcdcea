//! Q5_0: 32 five-bit quants with one f16 scale, `w = d·(q - 16)`.

use super::block32::{ScaledBlock32, QK};
use crate::kernels::block::{unpack_nibbles, Block, Half};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: Half,
    /// The fifth bit of element `e` is bit `e` of this little-endian u32 (bit `e % 8` of byte
    /// `e / 8`).
    pub qh: [u8; 4],
    /// The low four bits, laid out as in Q4_0.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ5_0 {}

/// The unsigned five-bit quants (0..31) of Q5_0 and Q5_1 in element order.
#[inline]
pub(super) fn five_bit_quants(qh: [u8; 4], qs: &[u8; QK / 2]) -> [i8; QK] {
    let mut q = [0i8; QK];
    unpack_nibbles(qs, &mut q, |n| n as i8);
    // Byte k of `qh` holds the fifth bits of elements 8k..8k+8.
    for (out, &bits) in q.chunks_exact_mut(8).zip(&qh) {
        for (bit, o) in out.iter_mut().enumerate() {
            *o |= (((bits >> bit) & 1) << 4) as i8;
        }
    }
    q
}

impl ScaledBlock32 for BlockQ5_0 {
    #[inline]
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline]
    fn quants(&self) -> [i8; QK] {
        five_bit_quants(self.qh, &self.qs).map(|q| q - 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::block32;
    use crate::kernels::testing::{check_random_vec_dots, no_extra_tolerance, Rng};
    use crate::kernels::GgmlType;

    fn fix(b: &mut BlockQ5_0, r: &mut Rng) {
        b.d = r.scale();
    }

    #[test]
    fn dequantize_known_block() {
        // Nibbles as in the Q4_0 test; the fifth bit is set for elements 0, 17 and 31
        // (qh = 0x8002_0001).
        let b = BlockQ5_0 {
            d: Half::from_f32(0.25),
            qh: 0x8002_0001u32.to_le_bytes(),
            qs: std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4)),
        };
        let bytes: Vec<u8> = [b.d.0.to_vec(), b.qh.to_vec(), b.qs.to_vec()].concat();
        let mut y = [0f32; QK];
        block32::dequantize::<BlockQ5_0>(&bytes, &mut y);
        for (e, &v) in y.iter().enumerate() {
            let nibble = if e < 16 { e } else { 31 - e } as f32;
            let high = if matches!(e, 0 | 17 | 31) { 16.0 } else { 0.0 };
            assert_eq!(v, (nibble + high - 16.0) * 0.25, "element {e}");
        }
        assert_eq!((y[0], y[1], y[17], y[31]), (0.0, -3.75, 3.5, 0.0));
    }

    #[test]
    fn vec_dot_matches_dequantized_dot() {
        check_random_vec_dots(GgmlType::Q5_0, fix, no_extra_tolerance);
    }

    #[test]
    fn simd_vec_dot_matches_scalar() {
        let edges = [
            BlockQ5_0 {
                d: Half::from_bits(0x7BFF),
                qh: [0; 4],
                qs: [0; 16],
            },
            BlockQ5_0 {
                d: Half::from_bits(0xFBFF),
                qh: [0xFF; 4],
                qs: [0xFF; 16],
            },
            BlockQ5_0 {
                d: Half::from_bits(0x0001),
                qh: [0xAA; 4],
                qs: [0x5A; 16],
            },
            BlockQ5_0 {
                d: Half::from_bits(0x8000),
                qh: [0x0F; 4],
                qs: [0x88; 16],
            },
        ];
        block32::tests::check_simd_matches_scalar(fix, &edges);
    }
}
