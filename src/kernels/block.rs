//! Typed, zero-copy views of quant blocks inside byte buffers, and the small number formats the
//! blocks store (IEEE half, bfloat16, E8M0).
//!
//! Weight rows come from an mmap'd file at arbitrary offsets, so every block type is built only
//! from byte-sized fields (alignment 1) and multi-byte numbers are decoded with `from_le_bytes`.
//! That makes a `&[u8]` → `&[Block]` view valid at any address.

/// A ggml block type: `#[repr(C)]`, byte fields only, no padding.
///
/// # Safety
/// Implementors must have alignment 1, no padding, and accept every bit pattern (so fields are
/// `u8` / `i8` arrays or types built the same way).
pub unsafe trait Block: Copy + 'static {}

/// Views `bytes` as blocks. A trailing partial block is ignored; callers pass whole blocks.
#[inline]
pub fn blocks<B: Block>(bytes: &[u8]) -> &[B] {
    const { assert!(align_of::<B>() == 1 && size_of::<B>() > 0) };
    debug_assert_eq!(
        bytes.len() % size_of::<B>(),
        0,
        "not a whole number of blocks"
    );
    let n = bytes.len() / size_of::<B>();
    // SAFETY: `B` has alignment 1 and accepts every bit pattern (the `Block` contract), and the
    // `n` blocks lie within `bytes`, which stays borrowed for the returned lifetime.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n) }
}

/// Mutable version of [`blocks`].
#[inline]
pub fn blocks_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    const { assert!(align_of::<B>() == 1 && size_of::<B>() > 0) };
    debug_assert_eq!(
        bytes.len() % size_of::<B>(),
        0,
        "not a whole number of blocks"
    );
    let n = bytes.len() / size_of::<B>();
    // SAFETY: as in `blocks`; the exclusive borrow of `bytes` makes the view exclusive too, and
    // any value written through it is a valid byte pattern.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), n) }
}

/// Splits `x` into arrays of `N` elements (a trailing remainder is ignored).
pub fn arrays<T, const N: usize>(x: &[T]) -> impl Iterator<Item = &[T; N]> {
    x.chunks_exact(N)
        .map(|c| c.try_into().expect("chunks_exact yields N elements"))
}

/// An IEEE binary16 value stored little-endian (ggml's `ggml_half`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Half(pub [u8; 2]);

// SAFETY: two bytes, alignment 1, every bit pattern is some f16.
unsafe impl Block for Half {}

impl Half {
    pub fn from_bits(bits: u16) -> Half {
        Half(bits.to_le_bytes())
    }

    #[inline]
    pub fn to_bits(self) -> u16 {
        u16::from_le_bytes(self.0)
    }

    /// Exact widening (every f16 is an f32). Inlined, unlike `half`'s runtime-dispatched
    /// conversion: the kernels widen a scale per block. The magnitude bits move to the f32
    /// positions and a multiplication by 2^112 re-biases the exponent (also turning subnormals
    /// into f32 normals); infinities and NaNs get the all-ones f32 exponent.
    #[inline]
    pub fn to_f32(self) -> f32 {
        let h = u32::from(self.to_bits());
        let sign = (h & 0x8000) << 16;
        let shifted = (h & 0x7FFF) << 13;
        let magnitude = if h & 0x7C00 == 0x7C00 {
            shifted | 0x7F80_0000
        } else {
            (f32::from_bits(shifted) * 2f32.powi(112)).to_bits()
        };
        f32::from_bits(sign | magnitude)
    }

    /// Round to nearest, ties to even, like ggml's `GGML_FP32_TO_FP16`; a NaN becomes the quiet
    /// NaN `0x7E00` with the input's sign, as ggml's scalar conversion does.
    pub fn from_f32(x: f32) -> Half {
        if x.is_nan() {
            let sign = ((x.to_bits() >> 16) & 0x8000) as u16;
            return Half::from_bits(sign | 0x7E00);
        }
        Half::from_bits(half::f16::from_f32(x).to_bits())
    }
}

/// A bfloat16 value stored little-endian (ggml's `ggml_bf16_t`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16(pub [u8; 2]);

// SAFETY: two bytes, alignment 1, every bit pattern is some bf16.
unsafe impl Block for Bf16 {}

impl Bf16 {
    #[inline]
    pub fn to_bits(self) -> u16 {
        u16::from_le_bytes(self.0)
    }

    /// Exact widening: a bf16 is the top half of an f32.
    pub fn to_f32(self) -> f32 {
        f32::from_bits(u32::from(self.to_bits()) << 16)
    }

    /// Round to nearest, ties to even; a NaN keeps its sign and top payload bits and is made
    /// quiet (ggml's `GGML_FP32_TO_BF16`).
    pub fn from_f32(x: f32) -> Bf16 {
        let bits = x.to_bits();
        let out = if x.is_nan() {
            (bits >> 16) as u16 | 0x0040
        } else {
            // Adding 0x7FFF plus the lowest kept bit rounds ties to even; no carry can leave the
            // 32 bits because only NaNs lie above the largest finite magnitudes.
            ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
        };
        Bf16(out.to_le_bytes())
    }
}

/// A little-endian f32 (the F32 "block").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct F32Le(pub [u8; 4]);

// SAFETY: four bytes, alignment 1, every bit pattern is some f32.
unsafe impl Block for F32Le {}

impl F32Le {
    pub fn to_f32(self) -> f32 {
        f32::from_le_bytes(self.0)
    }

    pub fn from_f32(x: f32) -> F32Le {
        F32Le(x.to_le_bytes())
    }
}

/// Half of the value of an E8M0 scale (2^(e-127) / 2 = 2^(e-128)), ggml's
/// `GGML_E8M0_TO_FP32_HALF`: MXFP4's value table holds doubled E2M1 values, so the halving
/// cancels out. e = 0 and 1 give the subnormals 2^-128 and 2^-127; 0xFF is not treated as NaN.
#[inline]
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    if e < 2 {
        f32::from_bits(0x0020_0000 << e)
    } else {
        f32::from_bits(u32::from(e - 1) << 23)
    }
}

/// Splits bytes into their nibbles in ggml's order, all low nibbles first, then all high ones,
/// mapping each through `value`: `out[i] = value(bytes[i] & 15)`, `out[n + i] = value(bytes[i] >> 4)`.
#[inline]
pub fn unpack_nibbles(bytes: &[u8], out: &mut [i8], value: impl Fn(u8) -> i8) {
    debug_assert_eq!(out.len(), 2 * bytes.len());
    let (lo, hi) = out.split_at_mut(bytes.len());
    for ((&b, l), h) in bytes.iter().zip(lo).zip(hi) {
        *l = value(b & 0x0F);
        *h = value(b >> 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_rounds_to_nearest_even() {
        assert_eq!(Half::from_f32(1.0).to_bits(), 0x3C00);
        assert_eq!(Half::from_f32(-2.0).to_bits(), 0xC000);
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa.
        assert_eq!(Half::from_f32(1.0 + 2f32.powi(-11)).to_bits(), 0x3C00);
        assert_eq!(Half::from_f32(1.0 + 3.0 * 2f32.powi(-11)).to_bits(), 0x3C02);
        assert_eq!(Half::from_f32(65504.0).to_bits(), 0x7BFF);
        assert_eq!(Half::from_f32(65520.0).to_bits(), 0x7C00);
        assert_eq!(Half::from_f32(-0.0).to_bits(), 0x8000);
        // Smallest subnormal, and half of it (a tie with zero, rounds to even = 0).
        assert_eq!(Half::from_f32(2f32.powi(-24)).to_bits(), 0x0001);
        assert_eq!(Half::from_f32(2f32.powi(-25)).to_bits(), 0x0000);
        assert_eq!(Half::from_f32(f32::NAN).to_bits(), 0x7E00);
        assert_eq!(Half::from_f32(-f32::NAN).to_bits(), 0xFE00);
        assert_eq!(Half::from_bits(0x0001).to_f32(), 2f32.powi(-24));
        assert_eq!(Half::from_bits(0x3555).to_f32(), 0.333_251_95);
    }

    #[test]
    fn half_widening_matches_half_crate_for_every_value() {
        for bits in 0..=u16::MAX {
            let (got, want) = (
                Half::from_bits(bits).to_f32(),
                half::f16::from_bits(bits).to_f32(),
            );
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{bits:#06x}"
            );
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_quiets_nan() {
        let bf = |x: f32| Bf16::from_f32(x).to_bits();
        assert_eq!(bf(1.0), 0x3F80);
        assert_eq!(bf(1.0 + 2f32.powi(-8)), 0x3F80);
        assert_eq!(bf(1.0 + 3.0 * 2f32.powi(-8)), 0x3F82);
        assert_eq!(bf(-1.0 - 2f32.powi(-8) - 2f32.powi(-20)), 0xBF81);
        assert_eq!(bf(f32::MAX), 0x7F80);
        assert_eq!(bf(f32::from_bits(0x7F80_0001)), 0x7FC0);
        assert_eq!(bf(f32::from_bits(0xFFA0_0000)), 0xFFE0);
        assert_eq!(Bf16(0x3F80u16.to_le_bytes()).to_f32(), 1.0);
    }

    #[test]
    fn e8m0_half_values() {
        assert_eq!(e8m0_to_f32_half(0), 2f32.powi(-128));
        assert_eq!(e8m0_to_f32_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_to_f32_half(2), 2f32.powi(-126));
        assert_eq!(e8m0_to_f32_half(127), 0.5);
        assert_eq!(e8m0_to_f32_half(128), 1.0);
        assert_eq!(e8m0_to_f32_half(255), 2f32.powi(127));
    }

    #[test]
    fn views_work_at_odd_offsets() {
        let bytes: Vec<u8> = (0..9).collect();
        let halves = blocks::<Half>(&bytes[1..]);
        assert_eq!(halves.len(), 4);
        assert_eq!(halves[0].to_bits(), 0x0201);
        let mut unpacked = [0i8; 4];
        unpack_nibbles(&[0x21, 0x43], &mut unpacked, |n| n as i8 - 8);
        assert_eq!(unpacked, [-7, -5, -6, -4]);
    }
}
