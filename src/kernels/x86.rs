//! x86-64 AVX2 kernels (with FMA and F16C present, as on every AVX2 CPU that matters), chosen at
//! run time by [`super::dispatch`].
//!
//! Every kernel computes the same exact integer sums as the scalar reference. The super-block
//! kernels then perform the same f32 operations in the same order (blocks summed in order from
//! -0.0 like `Iterator::sum`), so they equal the scalar twin bit for bit; the 32-element block
//! kernels accumulate in f32 lanes like ggml (see `scaled_row!`). The integer part: unsigned weight quants go through `maddubs` (u8·i8 pairs into
//! i16; the quants are at most 63, so the pair sums cannot saturate) and signed ones through
//! sign extension and `madd`; offsets such as Q4_0's `-8` are applied by subtracting the
//! activation sums, so an activation of -128 never needs negating.

use super::quants::block32::QK;
use super::quants::iq4_nl::KVALUES;
use super::quants::iq4_xs::BlockIQ4XS;
use super::quants::q4_0::BlockQ4_0;
use super::quants::q4_1::BlockQ4_1;
use super::quants::q4_k::BlockQ4K;
use super::quants::q5_0::BlockQ5_0;
use super::quants::q5_1::BlockQ5_1;
use super::quants::q5_k::BlockQ5K;
use super::quants::q6_k::BlockQ6K;
use super::quants::q8_0::BlockQ8_0;
use super::quants::q8_1::BlockQ8_1;
use super::quants::q8_k::BlockQ8K;
use super::quants::superblock::{scale_min_k4, QK_K};
use crate::kernels::block::blocks;
use crate::kernels::GgmlType;
use std::arch::x86_64::*;

/// Whether this CPU can run the kernels of this module.
pub fn avx2_available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

use super::x86_avx512;
use crate::kernels::dispatch::Isa;
use crate::kernels::{Gemv, Tile, VecDot, VecDot4};

/// Whether `isa` selects the AVX-512 VNNI kernels and this CPU can run them.
fn avx512(isa: Isa) -> bool {
    isa == Isa::Avx512Vnni && x86_avx512::available()
}

/// The fastest `vec_dot` of a weight type at level `isa` (AVX2 or above), with its name, if
/// there is one. Returns `None` unless [`avx2_available`]: the wrappers handed out here are
/// only sound on such a CPU.
pub fn vec_dot(isa: Isa, ty: GgmlType) -> Option<(VecDot, &'static str)> {
    if !matches!(isa, Isa::Avx2 | Isa::Avx512Vnni) || !avx2_available() {
        return None;
    }
    if let Some(f) = x86_avx512::vec_dot(ty).filter(|_| avx512(isa)) {
        return Some((f, "avx512vnni"));
    }
    let f: VecDot = match ty {
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        GgmlType::IQ4_XS => iq4_xs,
        _ => return None,
    };
    Some((f, "avx2"))
}

/// The fastest four-row `vec_dot4` of a weight type at level `isa`, if there is one (same
/// contract as [`vec_dot`]).
pub fn vec_dot4(isa: Isa, ty: GgmlType) -> Option<VecDot4> {
    if !matches!(isa, Isa::Avx2 | Isa::Avx512Vnni) || !avx2_available() {
        return None;
    }
    // The AVX-512 `vec_dot`s sum differently from the AVX2 four-row kernels; their tiles serve
    // batches instead.
    if avx512(isa) && x86_avx512::vec_dot(ty).is_some() {
        return None;
    }
    Some(match ty {
        GgmlType::Q4_0 => q4_0_x4,
        GgmlType::Q4_1 => q4_1_x4,
        GgmlType::Q5_0 => q5_0_x4,
        GgmlType::Q5_1 => q5_1_x4,
        GgmlType::Q8_0 => q8_0_x4,
        GgmlType::Q4_K => q4_k_x4,
        GgmlType::Q6_K => q6_k_x4,
        _ => return None,
    })
}

/// The tiled batch kernel of a weight type at level `isa`, if there is one (same contract as
/// [`vec_dot`]).
pub fn tile(isa: Isa, ty: GgmlType) -> Option<Tile> {
    x86_avx512::tile(ty).filter(|_| avx512(isa))
}

/// The several-row single-token kernel of a weight type at level `isa`, if there is one (same
/// contract as [`vec_dot`]).
pub fn gemv(isa: Isa, ty: GgmlType) -> Option<Gemv> {
    x86_avx512::gemv(ty).filter(|_| avx512(isa))
}

macro_rules! entry4 {
    ($name:ident, $row4:ident, $w:ty, $a:ty) => {
        fn $name(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]) {
            let w = blocks::<$w>(w);
            let a = a.map(|a| blocks::<$a>(a));
            assert!(a.iter().all(|a| a.len() == w.len()), "activation rows");
            let _ = n;
            // SAFETY: only handed out by `vec_dot4`, after AVX2, FMA and F16C were
            // detected on this CPU.
            *out = unsafe { $row4(w, a) };
        }
    };
}
entry4!(q4_0_x4, q4_0_row4, BlockQ4_0, BlockQ8_0);
entry4!(q4_1_x4, q4_1_row4, BlockQ4_1, BlockQ8_1);
entry4!(q5_0_x4, q5_0_row4, BlockQ5_0, BlockQ8_0);
entry4!(q5_1_x4, q5_1_row4, BlockQ5_1, BlockQ8_1);
entry4!(q8_0_x4, q8_0_row4, BlockQ8_0, BlockQ8_0);
entry4!(q4_k_x4, q4_k_row4, BlockQ4K, BlockQ8K);
entry4!(q6_k_x4, q6_k_row4, BlockQ6K, BlockQ8K);

/// Safe entry points: each is only reachable through [`vec_dot`], which checked the CPU.
macro_rules! entry {
    ($name:ident, $row:ident, $w:ty, $a:ty) => {
        fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let (w, a) = (blocks::<$w>(w), blocks::<$a>(a));
            assert_eq!(a.len(), w.len(), "activation row");
            let _ = n;
            // SAFETY: this function is only handed out by `vec_dot`, after AVX2, FMA and
            // F16C were detected on this CPU.
            unsafe { $row(w, a) }
        }
    };
}
entry!(q4_0, q4_0_row, BlockQ4_0, BlockQ8_0);
entry!(q4_1, q4_1_row, BlockQ4_1, BlockQ8_1);
entry!(q5_0, q5_0_row, BlockQ5_0, BlockQ8_0);
entry!(q5_1, q5_1_row, BlockQ5_1, BlockQ8_1);
entry!(q8_0, q8_0_row, BlockQ8_0, BlockQ8_0);
entry!(q4_k, q4_k_row, BlockQ4K, BlockQ8K);
entry!(q5_k, q5_k_row, BlockQ5K, BlockQ8K);
entry!(q6_k, q6_k_row, BlockQ6K, BlockQ8K);
entry!(iq4_xs, iq4_xs_row, BlockIQ4XS, BlockQ8K);

#[inline]
#[target_feature(enable = "avx2")]
fn load32<T: Copy>(x: &[T; 32]) -> __m256i {
    const { assert!(size_of::<T>() == 1) };
    // SAFETY: `x` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(x.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load16(x: &[u8; 16]) -> __m128i {
    // SAFETY: `x` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(x.as_ptr().cast()) }
}

/// The 32 nibbles of 16 bytes in ggml's order: low nibbles (elements 0..16), then high ones.
#[inline]
#[target_feature(enable = "avx2")]
fn nibbles(qs: &[u8; 16]) -> __m256i {
    let x = load16(qs);
    let hi = _mm_srli_epi16::<4>(x);
    let both = _mm256_set_m128i(hi, x);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// 0x10 in byte `e` where bit `e` of the little-endian `qh` is set (the fifth bit of Q5_0/Q5_1).
#[inline]
#[target_feature(enable = "avx2")]
fn fifth_bits(qh: [u8; 4]) -> __m256i {
    let x = _mm256_set1_epi32(i32::from_le_bytes(qh));
    #[rustfmt::skip]
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let bytes = _mm256_shuffle_epi8(x, spread);
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// `Σ u_i a_i` in 8 i32 lanes for unsigned `u ≤ 63` and any i8 `a` (exact).
#[inline]
#[target_feature(enable = "avx2")]
fn dot_u8_i8(u: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1))
}

/// `Σ (u_i - off) a_i` in 8 i32 lanes for unsigned `u, off ≤ 31` (exact: both i16 pair sums
/// stay within ±7936).
#[inline]
#[target_feature(enable = "avx2")]
fn dot_offset_u8_i8(u: __m256i, off: i8, a: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(u, a);
    let o = _mm256_maddubs_epi16(_mm256_set1_epi8(off), a);
    _mm256_madd_epi16(_mm256_sub_epi16(p, o), _mm256_set1_epi16(1))
}

/// `Σ w_i a_i` in 8 i32 lanes for any i8 `w` and `a` (sign-extended to i16, exact).
#[inline]
#[target_feature(enable = "avx2")]
fn dot_i8_i8(w: __m256i, a: __m256i) -> __m256i {
    let lo = |v: __m256i| _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v));
    let hi = |v: __m256i| _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(v));
    _mm256_add_epi32(
        _mm256_madd_epi16(lo(w), lo(a)),
        _mm256_madd_epi16(hi(w), hi(a)),
    )
}

/// The unsigned quants of one block as 32 bytes, ready for [`dot_u8_i8`] (and the offset
/// that makes them signed, applied by [`dot_offset_u8_i8`]).
#[inline]
#[target_feature(enable = "avx2")]
fn unpack_q4_0(w: &BlockQ4_0) -> __m256i {
    nibbles(&w.qs)
}

#[inline]
#[target_feature(enable = "avx2")]
fn unpack_q5_0(w: &BlockQ5_0) -> __m256i {
    _mm256_or_si256(nibbles(&w.qs), fifth_bits(w.qh))
}

#[inline]
#[target_feature(enable = "avx2")]
fn unpack_q8_0(w: &BlockQ8_0) -> __m256i {
    load32(&w.qs)
}

#[inline]
#[target_feature(enable = "avx2")]
fn unpack_q4_1(w: &BlockQ4_1) -> __m256i {
    nibbles(&w.qs)
}

#[inline]
#[target_feature(enable = "avx2")]
fn unpack_q5_1(w: &BlockQ5_1) -> __m256i {
    _mm256_or_si256(nibbles(&w.qs), fifth_bits(w.qh))
}

/// The integer dot of unpacked weights with activation quants, in 8 i32 lanes whose sum is
/// the scalar twin's exact `Σ q_w q_a`.
#[inline]
#[target_feature(enable = "avx2")]
fn idot_off8(u: __m256i, a: &[i8; 32]) -> __m256i {
    dot_offset_u8_i8(u, 8, load32(a))
}

#[inline]
#[target_feature(enable = "avx2")]
fn idot_off16(u: __m256i, a: &[i8; 32]) -> __m256i {
    dot_offset_u8_i8(u, 16, load32(a))
}

#[inline]
#[target_feature(enable = "avx2")]
fn idot_signed(u: __m256i, a: &[i8; 32]) -> __m256i {
    dot_i8_i8(u, load32(a))
}

#[inline]
#[target_feature(enable = "avx2")]
fn idot_unsigned(u: __m256i, a: &[i8; 32]) -> __m256i {
    dot_u8_i8(u, load32(a))
}

#[cfg(test)]
#[target_feature(enable = "avx2")]
fn isum_q4_0(w: &BlockQ4_0, a: &BlockQ8_0) -> __m256i {
    idot_off8(unpack_q4_0(w), &a.qs)
}
#[cfg(test)]
#[target_feature(enable = "avx2")]
fn isum_q5_0(w: &BlockQ5_0, a: &BlockQ8_0) -> __m256i {
    idot_off16(unpack_q5_0(w), &a.qs)
}
#[cfg(test)]
#[target_feature(enable = "avx2")]
fn isum_q8_0(w: &BlockQ8_0, a: &BlockQ8_0) -> __m256i {
    idot_signed(unpack_q8_0(w), &a.qs)
}
#[cfg(test)]
#[target_feature(enable = "avx2")]
fn isum_q4_1(w: &BlockQ4_1, a: &BlockQ8_1) -> __m256i {
    idot_unsigned(unpack_q4_1(w), &a.qs)
}
#[cfg(test)]
#[target_feature(enable = "avx2")]
fn isum_q5_1(w: &BlockQ5_1, a: &BlockQ8_1) -> __m256i {
    idot_unsigned(unpack_q5_1(w), &a.qs)
}

/// Exact f16 → f32 widening of a scale with F16C.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn f16(h: crate::kernels::block::Half) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits()))))
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

// The 32-element block formats accumulate like ggml's AVX2 kernels: per block, the exact
// integer lanes are converted to f32 and fused-multiply-added with the block's scale product
// into 8 f32 lanes, summed once at the end (the scalar twin sums block results in order, so
// the two agree to rounding, not bit for bit; the integer sums are tested to be identical).
macro_rules! scaled_row {
    ($row:ident, $row4:ident, $unpack:ident, $idot:ident, $w:ty) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $row(w: &[$w], a: &[BlockQ8_0]) -> f32 {
            // Two accumulators (even and odd blocks) hide the FMA latency.
            let mut acc = [_mm256_setzero_ps(); 2];
            for (i, (w, a)) in w.iter().zip(a).enumerate() {
                let d = _mm256_set1_ps(f16(w.d) * f16(a.d));
                let p = _mm256_cvtepi32_ps($idot($unpack(w), &a.qs));
                acc[i & 1] = _mm256_fmadd_ps(d, p, acc[i & 1]);
            }
            hsum_ps(_mm256_add_ps(acc[0], acc[1]))
        }

        /// Four activation rows at once, each weight block unpacked once; every result equals
        /// the one-row kernel's bit for bit.
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $row4(w: &[$w], a: [&[BlockQ8_0]; 4]) -> [f32; 4] {
            let mut acc = [[_mm256_setzero_ps(); 2]; 4];
            for (i, w) in w.iter().enumerate() {
                let (u, dw) = ($unpack(w), f16(w.d));
                for (acc, a) in acc.iter_mut().zip(a) {
                    let a = &a[i];
                    let d = _mm256_set1_ps(dw * f16(a.d));
                    let p = _mm256_cvtepi32_ps($idot(u, &a.qs));
                    acc[i & 1] = _mm256_fmadd_ps(d, p, acc[i & 1]);
                }
            }
            acc.map(|v| hsum_ps(_mm256_add_ps(v[0], v[1])))
        }
    };
}
scaled_row!(q4_0_row, q4_0_row4, unpack_q4_0, idot_off8, BlockQ4_0);
scaled_row!(q5_0_row, q5_0_row4, unpack_q5_0, idot_off16, BlockQ5_0);
scaled_row!(q8_0_row, q8_0_row4, unpack_q8_0, idot_signed, BlockQ8_0);

macro_rules! offset_row {
    ($row:ident, $row4:ident, $unpack:ident, $w:ty) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $row(w: &[$w], a: &[BlockQ8_1]) -> f32 {
            let (mut acc, mut summs) = ([_mm256_setzero_ps(); 2], 0f32);
            for (i, (w, a)) in w.iter().zip(a).enumerate() {
                let d = _mm256_set1_ps(f16(w.d) * f16(a.d));
                let sumi = idot_unsigned($unpack(w), &a.qs);
                acc[i & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc[i & 1]);
                summs += f16(w.m) * f16(a.s);
            }
            hsum_ps(_mm256_add_ps(acc[0], acc[1])) + summs
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        fn $row4(w: &[$w], a: [&[BlockQ8_1]; 4]) -> [f32; 4] {
            let (mut acc, mut summs) = ([[_mm256_setzero_ps(); 2]; 4], [0f32; 4]);
            for (i, w) in w.iter().enumerate() {
                let (u, dw, mw) = ($unpack(w), f16(w.d), f16(w.m));
                for ((acc, summs), a) in acc.iter_mut().zip(&mut summs).zip(a) {
                    let a = &a[i];
                    let d = _mm256_set1_ps(dw * f16(a.d));
                    let sumi = idot_unsigned(u, &a.qs);
                    acc[i & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc[i & 1]);
                    *summs += mw * f16(a.s);
                }
            }
            std::array::from_fn(|t| hsum_ps(_mm256_add_ps(acc[t][0], acc[t][1])) + summs[t])
        }
    };
}
offset_row!(q4_1_row, q4_1_row4, unpack_q4_1, BlockQ4_1);
offset_row!(q5_1_row, q5_1_row4, unpack_q5_1, BlockQ5_1);

/// The 32-byte chunk `k` of a 256-byte activation array.
#[inline]
fn chunk(qs: &[i8; QK_K], k: usize) -> &[i8; 32] {
    qs[32 * k..][..32].try_into().expect("32 bytes")
}

/// `Σ_s scales[s]·(q_s·a_s)` over the 8 sub-blocks of 32 of a Q4_K/Q5_K block whose low
/// nibbles are `qs` and fifth bits (if any) `qh`, for `N` activation blocks at once.
#[inline]
#[target_feature(enable = "avx2")]
fn k4_isums<const N: usize>(
    qs: &[u8; QK_K / 2],
    qh: Option<&[u8; 32]>,
    a: [&[i8; QK_K]; N],
    scales: &[i32; 8],
) -> [i32; N] {
    let low4 = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let hbits = qh.map(|h| load32(h));
    let mut acc = [_mm256_setzero_si256(); N];
    for j in 0..4 {
        let q = load32(qs[32 * j..][..32].try_into().expect("32 bytes"));
        let mut lo = _mm256_and_si256(q, low4);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low4);
        if let Some(h) = hbits {
            // Bit 2j (sub-block 2j) and 2j + 1 of each byte, moved to bit 4.
            let h0 = _mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * j as i32));
            let h1 = _mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * j as i32 + 1));
            lo = _mm256_or_si256(lo, _mm256_slli_epi16::<4>(_mm256_and_si256(h0, one)));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16::<4>(_mm256_and_si256(h1, one)));
        }
        let s0 = _mm256_set1_epi16(scales[2 * j] as i16);
        let s1 = _mm256_set1_epi16(scales[2 * j + 1] as i16);
        for (acc, a) in acc.iter_mut().zip(a) {
            let p0 = _mm256_maddubs_epi16(lo, load32(chunk(a, 2 * j)));
            let p1 = _mm256_maddubs_epi16(hi, load32(chunk(a, 2 * j + 1)));
            *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(p0, s0));
            *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(p1, s1));
        }
    }
    acc.map(|v| hsum(v))
}

/// The integer sub-block scales of a Q4_K/Q5_K block (as `ScalesK4::dot_by` hands them out).
#[inline]
fn k4_scales(s: &[u8; 12]) -> [i32; 8] {
    std::array::from_fn(|j| i32::from(scale_min_k4(j, s).0))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_row(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let mut acc = -0.0f32;
    for (w, a) in w.iter().zip(a) {
        // The closure inherits this function's target features.
        acc += w
            .scales
            .dot_by(a, |sc| k4_isums(&w.qs, None, [&a.qs], sc)[0]);
    }
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_row4(w: &[BlockQ4K], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    let mut acc = [-0.0f32; 4];
    for (i, w) in w.iter().enumerate() {
        let sc = k4_scales(&w.scales.scales);
        let isums = k4_isums(&w.qs, None, a.map(|a| &a[i].qs), &sc);
        for ((acc, a), isum) in acc.iter_mut().zip(a).zip(isums) {
            *acc += w.scales.dot_by(&a[i], |_| isum);
        }
    }
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_row(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let mut acc = -0.0f32;
    for (w, a) in w.iter().zip(a) {
        acc += w
            .scales
            .dot_by(a, |sc| k4_isums(&w.qs, Some(&w.qh), [&a.qs], sc)[0]);
    }
    acc
}

/// One Q6_K block dotted with `N` Q8_K blocks (the scalar twin's f32 steps).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_block<const N: usize>(w: &BlockQ6K, a: [&BlockQ8K; N]) -> [f32; N] {
    let low4 = _mm256_set1_epi8(0x0F);
    let three = _mm256_set1_epi8(3);
    let mut lanes = [_mm256_setzero_si256(); N];
    for half in 0..2 {
        let ql0 = load32(w.ql[64 * half..][..32].try_into().expect("32 bytes"));
        let ql1 = load32(w.ql[64 * half + 32..][..32].try_into().expect("32 bytes"));
        let qh = load32(w.qh[32 * half..][..32].try_into().expect("32 bytes"));
        let groups = [
            (_mm256_and_si256(ql0, low4), qh),
            (_mm256_and_si256(ql1, low4), _mm256_srli_epi16::<2>(qh)),
            (
                _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low4),
                _mm256_srli_epi16::<4>(qh),
            ),
            (
                _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low4),
                _mm256_srli_epi16::<6>(qh),
            ),
        ];
        for (g, (low, high)) in groups.into_iter().enumerate() {
            let high = _mm256_slli_epi16::<4>(_mm256_and_si256(high, three));
            let u = _mm256_or_si256(low, high);
            let s = 8 * half + 2 * g;
            let sc = _mm256_set_m128i(
                _mm_set1_epi16(i16::from(w.scales[s + 1])),
                _mm_set1_epi16(i16::from(w.scales[s])),
            );
            for (lanes, a) in lanes.iter_mut().zip(a) {
                let p = _mm256_maddubs_epi16(u, load32(chunk(&a.qs, 4 * half + g)));
                *lanes = _mm256_add_epi32(*lanes, _mm256_madd_epi16(p, sc));
            }
        }
    }
    let d = w.d.to_f32();
    std::array::from_fn(|t| {
        let a = a[t];
        // The quants are u - 32: remove 32·Σ_s scale_s·(Σ a over sub-block s); the Q8_K group
        // sums are exactly those sub-block sums.
        let offset: i32 = (0..16).map(|s| i32::from(w.scales[s]) * a.bsum(s)).sum();
        let isum = hsum(lanes[t]).wrapping_sub(32 * offset);
        (d * a.d()) * isum as f32
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_row(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut acc = -0.0f32;
    for (w, a) in w.iter().zip(a) {
        acc += q6_k_block(w, [a])[0];
    }
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_row4(w: &[BlockQ6K], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    let mut acc = [-0.0f32; 4];
    for (i, w) in w.iter().enumerate() {
        let r = q6_k_block(w, a.map(|a| &a[i]));
        for (acc, r) in acc.iter_mut().zip(r) {
            *acc += r;
        }
    }
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_xs_row(w: &[BlockIQ4XS], a: &[BlockQ8K]) -> f32 {
    // SAFETY: `KVALUES` is 16 readable bytes.
    let table = unsafe { _mm_loadu_si128(KVALUES.as_ptr().cast()) };
    let table = _mm256_set_m128i(table, table);
    let mut acc = -0.0f32;
    for (w, a) in w.iter().zip(a) {
        let d4d8 = w.d.to_f32() * a.d();
        let mut block = -0.0f32;
        for (s, ls) in w.scales().into_iter().enumerate() {
            let qs: &[u8; 16] = w.qs[16 * s..][..16].try_into().expect("16 bytes");
            let values = _mm256_shuffle_epi8(table, nibbles(qs));
            let dot = hsum(dot_i8_i8(values, load32(chunk(&a.qs, s))));
            block += (d4d8 * ls as f32) * dot as f32;
        }
        acc += block;
    }
    acc
}

const _: () = assert!(QK == 32);

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::kernels::portable_kernels;
    use crate::kernels::testing::{
        assert_four_rows_equal_one, kernel_activation_rows, kernel_weight_rows, same_f32, Rng,
    };

    /// Block-32 kernels: the result is within f32 rounding of the scalar twin (whose per-block
    /// terms bound the error); super-block kernels: bit for bit.
    #[test]
    fn avx2_vec_dots_match_scalar() {
        if !avx2_available() {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        let mut rng = Rng::new(0xA5);
        use GgmlType as T;
        for ty in [
            T::Q4_0,
            T::Q4_1,
            T::Q5_0,
            T::Q5_1,
            T::Q8_0,
            T::Q4_K,
            T::Q5_K,
            T::Q6_K,
            T::IQ4_XS,
        ] {
            let fast = vec_dot(Isa::Avx2, ty).expect("an AVX2 kernel").0;
            let act_ty = portable_kernels(ty).unwrap().act_ty;
            let scalar = crate::kernels::scalar_vec_dot(ty).unwrap();
            let bs = ty.block_size();
            let n = 4 * bs.max(QK_K);
            let (wb, ab) = (ty.block_bytes(), act_ty.row_bytes(bs).unwrap());
            for w in kernel_weight_rows(&mut rng, ty, n / bs) {
                for a in kernel_activation_rows(&mut rng, act_ty, n) {
                    let (f, r) = (fast(n, &w, &a), scalar(n, &w, &a));
                    if bs == QK_K {
                        assert!(same_f32(f, r), "{ty}: avx2 {f} vs scalar {r}");
                        continue;
                    }
                    let bound: f32 = w
                        .chunks_exact(wb)
                        .zip(a.chunks_exact(ab))
                        .map(|(w, a)| scalar(bs, w, a).abs())
                        .sum();
                    if !bound.is_finite() || bound > 1e36 {
                        assert!(!r.is_finite() || !f.is_finite() || bound > 1e36, "{ty}");
                        continue;
                    }
                    let tol = bound * 4e-6 + f32::MIN_POSITIVE;
                    assert!(
                        (f - r).abs() <= tol,
                        "{ty}: avx2 {f} vs scalar {r} (tol {tol})"
                    );
                }
            }
        }
    }

    /// The block-32 integer sums equal the scalar `Σ q_w q_a` exactly, extremes included.
    #[test]
    fn avx2_block32_integer_sums_are_exact() {
        use crate::kernels::quants::block32::{OffsetBlock32, ScaledBlock32};
        use crate::kernels::simd::scalar::dot_i8;
        if !avx2_available() {
            return;
        }
        let mut rng = Rng::new(0x5A);
        let n = 8 * QK;
        // SAFETY (all calls below): AVX2 was detected above.
        for w in kernel_weight_rows(&mut rng, GgmlType::Q8_0, n / QK) {
            for a in kernel_activation_rows(&mut rng, GgmlType::Q8_0, n) {
                let a = blocks::<BlockQ8_0>(&a);
                for (wb, ab) in blocks::<BlockQ8_0>(&w).iter().zip(a) {
                    let want = dot_i8(&wb.quants(), &ab.qs);
                    assert_eq!(unsafe { hsum(isum_q8_0(wb, ab)) }, want);
                }
            }
        }
        macro_rules! check {
            ($ty:expr, $b:ty, $act:ty, $act_ty:expr, $isum:ident) => {
                for w in kernel_weight_rows(&mut rng, $ty, n / QK) {
                    for a in kernel_activation_rows(&mut rng, $act_ty, n) {
                        let a = blocks::<$act>(&a);
                        for (wb, ab) in blocks::<$b>(&w).iter().zip(a) {
                            let want = dot_i8(&wb.quants(), &ab.qs);
                            assert_eq!(unsafe { hsum($isum(wb, ab)) }, want, "{}", $ty);
                        }
                    }
                }
            };
        }
        check!(
            GgmlType::Q4_0,
            BlockQ4_0,
            BlockQ8_0,
            GgmlType::Q8_0,
            isum_q4_0
        );
        check!(
            GgmlType::Q5_0,
            BlockQ5_0,
            BlockQ8_0,
            GgmlType::Q8_0,
            isum_q5_0
        );
        check!(
            GgmlType::Q4_1,
            BlockQ4_1,
            BlockQ8_1,
            GgmlType::Q8_1,
            isum_q4_1
        );
        check!(
            GgmlType::Q5_1,
            BlockQ5_1,
            BlockQ8_1,
            GgmlType::Q8_1,
            isum_q5_1
        );
        let _ = |b: &BlockQ4_1| (b.scale(), b.min());
        let _ = |b: &BlockQ4_0| b.scale();
    }

    /// The four-row kernels give exactly the one-row kernel's result for each row.
    #[test]
    fn avx2_four_row_kernels_equal_one_row() {
        if !avx2_available() {
            return;
        }
        let mut rng = Rng::new(0x44);
        use GgmlType as T;
        for ty in [
            T::Q4_0,
            T::Q4_1,
            T::Q5_0,
            T::Q5_1,
            T::Q8_0,
            T::Q4_K,
            T::Q6_K,
        ] {
            let (one, four) = (
                vec_dot(Isa::Avx2, ty).unwrap().0,
                vec_dot4(Isa::Avx2, ty).unwrap(),
            );
            assert_four_rows_equal_one(&mut rng, ty, one, four, "avx2");
        }
    }
}
