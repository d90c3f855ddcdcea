//! The kernel bodies, written once in [`level!`] and instantiated per instruction-set level
//! with that level's `#[target_feature]` string and 16-byte dot (a body must carry the
//! features itself for `sdot` to assemble and for the helpers to inline into it).

use super::Kernel;
use crate::kernels::block::{Block, Half};
use crate::kernels::quants::block32::ScaledBlock32;
use crate::kernels::quants::iq4_nl::{BlockIQ4NL, KVALUES};
use crate::kernels::quants::iq4_xs::BlockIQ4XS;
use crate::kernels::quants::mxfp4::{self, BlockMXFP4};
use crate::kernels::quants::q4_0::BlockQ4_0;
use crate::kernels::quants::q4_1::BlockQ4_1;
use crate::kernels::quants::q4_k::{BlockQ4K, ScalesK4};
use crate::kernels::quants::q5_0::BlockQ5_0;
use crate::kernels::quants::q5_1::BlockQ5_1;
use crate::kernels::quants::q5_k::BlockQ5K;
use crate::kernels::quants::q6_k::BlockQ6K;
use crate::kernels::quants::q8_0::BlockQ8_0;
use crate::kernels::quants::q8_1::BlockQ8_1;
use crate::kernels::quants::q8_k::BlockQ8K;
use crate::kernels::quants::superblock::scale_min_k4;
use std::arch::aarch64::*;
use std::arch::asm;

/// The 16 elements of `x` from `at`.
#[inline]
pub(super) fn at16<T>(x: &[T], at: usize) -> &[T; 16] {
    x[at..][..16].try_into().expect("16 elements")
}

#[inline]
#[target_feature(enable = "neon")]
fn load_u8(x: &[u8; 16]) -> uint8x16_t {
    // SAFETY: `x` is 16 readable bytes; the load has no alignment requirement.
    unsafe { vld1q_u8(x.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
pub(super) fn load_i8(x: &[i8; 16]) -> int8x16_t {
    // SAFETY: as in `load_u8`.
    unsafe { vld1q_s8(x.as_ptr()) }
}

/// `acc` plus the products `a_i·b_i` summed in groups of four (`sdot`'s lanes).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: dotprod is enabled for this function; registers only.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// `acc` plus the products `a_i·b_i` summed in groups of four, without dotprod: `smull`
/// widens to i16 (|-128·-128| fits) and `sadalp` adds pairs into the i32 lanes.
#[inline]
#[target_feature(enable = "neon")]
fn smull_sadalp(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    vpadalq_s16(vpadalq_s16(acc, lo), vmull_high_s8(a, b))
}

/// Exact f16 → f32 widening with `fcvt` (base Armv8; `Half::to_f32` takes a dozen
/// instructions, too many per 32-element block).
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn f16(h: Half) -> f32 {
    let out: f32;
    // SAFETY: registers only.
    unsafe {
        asm!(
            "fcvt {o:s}, {i:h}",
            o = out(vreg) out,
            i = in(vreg) i16::from_le_bytes(h.0),
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// A 32-element block's scale, offset (Q4_1/Q5_1's `m`) and quants, signed, in element order.
///
/// # Safety
/// The methods need NEON.
pub(super) trait Unpack32: Block {
    unsafe fn d(&self) -> f32;
    unsafe fn m(&self) -> Option<f32>;
    unsafe fn unpack(&self) -> [int8x16_t; 2];
}

/// Low nibbles (elements 0..16), then high nibbles (16..32).
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(qs: &[u8; 16]) -> [uint8x16_t; 2] {
    let x = load_u8(qs);
    [vandq_u8(x, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(x)]
}

/// 0x10 in the bytes of the elements whose bit is set in the little-endian `qh`.
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: [u8; 4]) -> [uint8x16_t; 2] {
    const BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let bits = load_u8(&BITS);
    let half = |k: usize| {
        let b = vcombine_u8(vdup_n_u8(qh[2 * k]), vdup_n_u8(qh[2 * k + 1]));
        vandq_u8(vtstq_u8(b, bits), vdupq_n_u8(0x10))
    };
    [half(0), half(1)]
}

#[inline]
#[target_feature(enable = "neon")]
fn minus(u: uint8x16_t, off: i8) -> int8x16_t {
    vsubq_s8(vreinterpretq_s8_u8(u), vdupq_n_s8(off))
}

#[inline]
#[target_feature(enable = "neon")]
fn lookup(table: &[i8; 16], qs: &[u8; 16]) -> [int8x16_t; 2] {
    let (t, [lo, hi]) = (load_i8(table), nibbles(qs));
    [vqtbl1q_s8(t, lo), vqtbl1q_s8(t, hi)]
}

macro_rules! unpack32 {
    ($($w:ty => |$b:ident| ($d:expr, $m:expr, $q:expr);)*) => {$(
        impl Unpack32 for $w {
            #[inline]
            #[target_feature(enable = "neon")]
            unsafe fn d(&self) -> f32 {
                let $b = self;
                $d
            }
            #[inline]
            #[target_feature(enable = "neon")]
            unsafe fn m(&self) -> Option<f32> {
                // Only the offset formats read the block here.
                #[allow(unused_variables)]
                let $b = self;
                $m
            }
            #[inline]
            #[target_feature(enable = "neon")]
            unsafe fn unpack(&self) -> [int8x16_t; 2] {
                let $b = self;
                $q
            }
        }
    )*};
}
unpack32! {
    BlockQ4_0 => |b| (f16(b.d), None, {
        let [lo, hi] = nibbles(&b.qs);
        [minus(lo, 8), minus(hi, 8)]
    });
    BlockQ5_0 => |b| (f16(b.d), None, {
        let ([lo, hi], [h0, h1]) = (nibbles(&b.qs), fifth_bits(b.qh));
        [minus(vorrq_u8(lo, h0), 16), minus(vorrq_u8(hi, h1), 16)]
    });
    BlockQ8_0 => |b| (f16(b.d), None, [load_i8(at16(&b.qs, 0)), load_i8(at16(&b.qs, 16))]);
    BlockIQ4NL => |b| (f16(b.d), None, lookup(&KVALUES, &b.qs));
    BlockMXFP4 => |b| (b.scale(), None, lookup(&mxfp4::KVALUES, &b.qs));
    BlockQ4_1 => |b| (f16(b.d), Some(f16(b.m)), {
        let [lo, hi] = nibbles(&b.qs);
        [vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)]
    });
    BlockQ5_1 => |b| (f16(b.d), Some(f16(b.m)), {
        let ([lo, hi], [h0, h1]) = (nibbles(&b.qs), fifth_bits(b.qh));
        [vreinterpretq_s8_u8(vorrq_u8(lo, h0)), vreinterpretq_s8_u8(vorrq_u8(hi, h1))]
    });
}

/// A Q4_K or Q5_K block: the shared scales, and its quants (0..31) by pairs of sub-blocks.
trait K4Block {
    fn scales(&self) -> &ScalesK4;
    /// Sub-blocks `2j` and `2j + 1`, each as two 16-byte halves.
    ///
    /// # Safety
    /// NEON must be present.
    unsafe fn pair(&self, j: usize) -> [[int8x16_t; 2]; 2];
}

/// The low and high nibbles of the 32 bytes Q4_K/Q5_K spend on sub-blocks `2j` and `2j + 1`.
#[inline]
#[target_feature(enable = "neon")]
fn k4_nibbles(qs: &[u8; 128], j: usize) -> [[uint8x16_t; 2]; 2] {
    let [l0, h0] = nibbles(at16(qs, 32 * j));
    let [l1, h1] = nibbles(at16(qs, 32 * j + 16));
    [[l0, l1], [h0, h1]]
}

impl K4Block for BlockQ4K {
    fn scales(&self) -> &ScalesK4 {
        &self.scales
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn pair(&self, j: usize) -> [[int8x16_t; 2]; 2] {
        let [[l0, l1], [h0, h1]] = k4_nibbles(&self.qs, j);
        let s = |x| vreinterpretq_s8_u8(x);
        [[s(l0), s(l1)], [s(h0), s(h1)]]
    }
}

impl K4Block for BlockQ5K {
    fn scales(&self) -> &ScalesK4 {
        &self.scales
    }
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn pair(&self, j: usize) -> [[int8x16_t; 2]; 2] {
        // The fifth bit of element l of sub-block s is bit s of qh[l].
        let qh = [load_u8(at16(&self.qh, 0)), load_u8(at16(&self.qh, 16))];
        let nib = k4_nibbles(&self.qs, j);
        let mut out = [[vdupq_n_s8(0); 2]; 2];
        for (k, (out, nib)) in out.iter_mut().zip(nib).enumerate() {
            let bit = vdupq_n_u8(1 << (2 * j + k));
            for ((o, n), h) in out.iter_mut().zip(nib).zip(qh) {
                let fifth = vandq_u8(vtstq_u8(h, bit), vdupq_n_u8(0x10));
                *o = vreinterpretq_s8_u8(vorrq_u8(n, fifth));
            }
        }
        out
    }
}

macro_rules! level {
    ($features:literal, $dot:ident) => {
        use super::*;

        /// The 32 quants `q` dotted with the 32 activations from `a[at]`, in i32 lanes.
        #[inline]
        #[target_feature(enable = $features)]
        fn lanes32(q: [int8x16_t; 2], a: &[i8], at: usize) -> int32x4_t {
            let acc = $dot(vdupq_n_s32(0), q[0], load_i8(at16(a, at)));
            $dot(acc, q[1], load_i8(at16(a, at + 16)))
        }

        /// `Σ a_i b_i` of 16 bytes, for the tests.
        ///
        /// # Safety
        /// The CPU must have this level's features.
        #[cfg(test)]
        #[target_feature(enable = $features)]
        pub unsafe fn dot16(a: &[i8; 16], b: &[i8; 16]) -> i32 {
            vaddvq_s32($dot(vdupq_n_s32(0), load_i8(a), load_i8(b)))
        }

        /// `Σ_blocks (d_w·d_a)·Σ q_w q_a` (the scalar `dot_q8_0`).
        #[inline]
        #[target_feature(enable = $features)]
        fn scaled_rows<W: Unpack32, const N: usize>(w: &[W], a: [&[BlockQ8_0]; N]) -> [f32; N] {
            let mut acc = [-0.0f32; N];
            for (i, w) in w.iter().enumerate() {
                // SAFETY: NEON is enabled here.
                let (q, d) = unsafe { (w.unpack(), w.d()) };
                for (acc, a) in acc.iter_mut().zip(a) {
                    let a = &a[i];
                    let isum = vaddvq_s32(lanes32(q, &a.qs, 0));
                    *acc += (d * f16(a.d)) * isum as f32;
                }
            }
            acc
        }

        /// `Σ_blocks (d_w·d_a)·Σ q_w q_a + m·s_a` (the scalar `dot_q8_1`).
        #[inline]
        #[target_feature(enable = $features)]
        fn offset_rows<W: Unpack32, const N: usize>(w: &[W], a: [&[BlockQ8_1]; N]) -> [f32; N] {
            let mut acc = [-0.0f32; N];
            for (i, w) in w.iter().enumerate() {
                // SAFETY: NEON is enabled here.
                let (q, d, m) = unsafe { (w.unpack(), w.d(), w.m().expect("an offset block")) };
                for (acc, a) in acc.iter_mut().zip(a) {
                    let a = &a[i];
                    let isum = vaddvq_s32(lanes32(q, &a.qs, 0)) as f32;
                    *acc += (d * f16(a.d)) * isum + m * f16(a.s);
                }
            }
            acc
        }

        /// Q4_K/Q5_K: the integer `Σ_s sc_s·(q_s·a_s)` here, the rest in `ScalesK4::dot_by`.
        #[inline]
        #[target_feature(enable = $features)]
        fn k4_rows<W: K4Block, const N: usize>(w: &[W], a: [&[BlockQ8K]; N]) -> [f32; N] {
            let mut acc = [-0.0f32; N];
            for (i, w) in w.iter().enumerate() {
                let sc: [i32; 8] =
                    std::array::from_fn(|s| i32::from(scale_min_k4(s, &w.scales().scales).0));
                // |Σ| ≤ 8·63·31·128·32 < 2^31: the lanes stay exact.
                let mut lanes = [vdupq_n_s32(0); N];
                for j in 0..4 {
                    // SAFETY: NEON is enabled here.
                    let [q0, q1] = unsafe { w.pair(j) };
                    for (lanes, a) in lanes.iter_mut().zip(a) {
                        let qs = &a[i].qs;
                        *lanes = vmlaq_n_s32(*lanes, lanes32(q0, qs, 64 * j), sc[2 * j]);
                        *lanes = vmlaq_n_s32(*lanes, lanes32(q1, qs, 64 * j + 32), sc[2 * j + 1]);
                    }
                }
                for ((acc, a), lanes) in acc.iter_mut().zip(a).zip(lanes) {
                    let isum = vaddvq_s32(lanes);
                    *acc += w.scales().dot_by(&a[i], |_| isum);
                }
            }
            acc
        }

        /// Q6_K: `Σ_blocks (d·d_a)·Σ_s sc_s·(q_s·a_s)` over 16 sub-blocks of 16.
        #[inline]
        #[target_feature(enable = $features)]
        fn q6_k_rows<const N: usize>(w: &[BlockQ6K], a: [&[BlockQ8K]; N]) -> [f32; N] {
            let mut acc = [-0.0f32; N];
            for (i, w) in w.iter().enumerate() {
                // |Σ| ≤ 16·128·32·128·16 = 2^27.
                let mut lanes = [vdupq_n_s32(0); N];
                for half in 0..2 {
                    // Explicit loads: a closure through `from_fn` would not be inlined.
                    let (ql, qh) = (&w.ql[64 * half..], &w.qh[32 * half..]);
                    let [ql0, ql1, ql2, ql3] = [0, 16, 32, 48].map(|at| at16(ql, at));
                    let ql = [load_u8(ql0), load_u8(ql1), load_u8(ql2), load_u8(ql3)];
                    let qh = [load_u8(at16(qh, 0)), load_u8(at16(qh, 16))];
                    for g in 0..4 {
                        for k in 0..2 {
                            let low = ql[2 * (g % 2) + k];
                            let low = if g < 2 {
                                vandq_u8(low, vdupq_n_u8(0x0F))
                            } else {
                                vshrq_n_u8::<4>(low)
                            };
                            // Bits 2g, 2g + 1 of qh moved to bits 4, 5.
                            let high = vandq_u8(qh[k], vdupq_n_u8(3 << (2 * g)));
                            let high = vshlq_u8(high, vdupq_n_s8(4 - 2 * g as i8));
                            let q = minus(vorrq_u8(low, high), 32);
                            let s = 8 * half + 2 * g + k;
                            let sc = i32::from(w.scales[s]);
                            for (lanes, a) in lanes.iter_mut().zip(a) {
                                let p = $dot(vdupq_n_s32(0), q, load_i8(at16(&a[i].qs, 16 * s)));
                                *lanes = vmlaq_n_s32(*lanes, p, sc);
                            }
                        }
                    }
                }
                let d = f16(w.d);
                for ((acc, a), lanes) in acc.iter_mut().zip(a).zip(lanes) {
                    let a = &a[i];
                    *acc += (d * a.d()) * vaddvq_s32(lanes) as f32;
                }
            }
            acc
        }

        /// IQ4_XS: each sub-block of 32 scaled in f32 (the scalar `BlockIQ4XS::dot`).
        #[inline]
        #[target_feature(enable = $features)]
        fn iq4_xs_rows<const N: usize>(w: &[BlockIQ4XS], a: [&[BlockQ8K]; N]) -> [f32; N] {
            let mut acc = [-0.0f32; N];
            for (i, w) in w.iter().enumerate() {
                let d = f16(w.d);
                let d4d8: [f32; N] = std::array::from_fn(|t| d * a[t][i].d());
                let mut block = [-0.0f32; N];
                for (s, ls) in w.scales().into_iter().enumerate() {
                    let q = lookup(&KVALUES, at16(&w.qs, 16 * s));
                    for ((block, a), d4d8) in block.iter_mut().zip(a).zip(d4d8) {
                        let dot = vaddvq_s32(lanes32(q, &a[i].qs, 32 * s));
                        *block += (d4d8 * ls as f32) * dot as f32;
                    }
                }
                for (acc, block) in acc.iter_mut().zip(block) {
                    *acc += block;
                }
            }
            acc
        }

        macro_rules! kernel {
            ($name:ident, $w:ty, $a:ty, $rows:ident) => {
                pub struct $name;
                impl Kernel for $name {
                    type W = $w;
                    type A = $a;
                    #[target_feature(enable = $features)]
                    unsafe fn rows<const N: usize>(w: &[$w], a: [&[$a]; N]) -> [f32; N] {
                        $rows(w, a)
                    }
                }
            };
        }
        kernel!(Q4_0, BlockQ4_0, BlockQ8_0, scaled_rows);
        kernel!(Q5_0, BlockQ5_0, BlockQ8_0, scaled_rows);
        kernel!(Q8_0, BlockQ8_0, BlockQ8_0, scaled_rows);
        kernel!(Iq4Nl, BlockIQ4NL, BlockQ8_0, scaled_rows);
        kernel!(Mxfp4, BlockMXFP4, BlockQ8_0, scaled_rows);
        kernel!(Q4_1, BlockQ4_1, BlockQ8_1, offset_rows);
        kernel!(Q5_1, BlockQ5_1, BlockQ8_1, offset_rows);
        kernel!(Q4K, BlockQ4K, BlockQ8K, k4_rows);
        kernel!(Q5K, BlockQ5K, BlockQ8K, k4_rows);
        kernel!(Q6K, BlockQ6K, BlockQ8K, q6_k_rows);
        kernel!(Iq4Xs, BlockIQ4XS, BlockQ8K, iq4_xs_rows);
    };
}

/// Plain NEON (Cortex-A72).
pub mod neon {
    level!("neon", smull_sadalp);
}

/// NEON with `sdot` (Cortex-A76 and later).
pub mod dotprod {
    level!("neon,dotprod", sdot);
}
