//! Q8_1: the activation format of Q4_1 and Q5_1 weights. A Q8_0 block plus `s = d·Σq`, which
//! lets the weight's offset `m` be applied once per block.

use super::block32::QK;
use super::q8_0;
use crate::kernels::block::{arrays, blocks, blocks_mut, Block, Half};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: Half,
    /// `d·Σ qs`, with the unrounded f32 `d`.
    pub s: Half,
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_1>() == 36);
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for BlockQ8_1 {}

/// Quantizes an activation row to Q8_1 (ggml's `quantize_row_q8_1_ref`): the quants are those of
/// Q8_0.
pub fn quantize(x: &[f32], dst: &mut [u8]) {
    let dst = blocks_mut::<BlockQ8_1>(dst);
    debug_assert_eq!(dst.len() * QK, x.len());
    for (y, x) in dst.iter_mut().zip(arrays::<f32, QK>(x)) {
        let (d, qs) = q8_0::quantize_block(x);
        let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
        *y = BlockQ8_1 {
            d: Half::from_f32(d),
            s: Half::from_f32(sum as f32 * d),
            qs,
        };
    }
}

/// `d·q` per element (the `s` field is redundant here).
pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    let src = blocks::<BlockQ8_1>(src);
    debug_assert_eq!(src.len() * QK, dst.len());
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = f32::from(q) * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_known_block() {
        // amax 1: d = 1/127, every quant 127 or -127, s = d·Σq.
        let x: [f32; 32] = std::array::from_fn(|i| if i < 20 { 1.0 } else { -1.0 });
        let mut bytes = [0u8; 36];
        quantize(&x, &mut bytes);
        let b = blocks::<BlockQ8_1>(&bytes)[0];
        assert_eq!(b.d, Half::from_f32(1.0 / 127.0));
        assert_eq!(b.qs[0], 127);
        assert_eq!(b.qs[31], -127);
        // Σq = 127·(20 - 12) = 1016; 1016/127 = 8.
        assert_eq!(b.s.to_f32(), 8.0);

        let mut out = [0f32; 32];
        dequantize(&bytes, &mut out);
        assert_eq!(out[0], 127.0 * Half::from_f32(1.0 / 127.0).to_f32());
    }
}
