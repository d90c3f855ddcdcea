//! x86-64 AVX-512 VNNI kernels (chosen by [`super::x86`] when
//! [`super::dispatch::Isa::Avx512Vnni`] is selected): 1-row kernels and tiles for the 32-element
//! block formats, tiles for Q4_K and Q6_K (whose AVX2 1-row kernels already equal the scalar
//! twin, so the tiles equal them too).
//!
//! `vpdpbusd` multiplies unsigned weight bytes by signed activation bytes; signed weight quants
//! are stored with an offset (`q + off ≥ 0`), removed exactly by subtracting `off·Σ q_a`.
//!
//! Unlike the AVX2 block-32 kernels, these equal the scalar twin bit for bit: each block's
//! integer sum is reduced exactly, then the f32 steps `acc + (d_w·d_a)·isum (+ m·s)` run per
//! block in order, with one f32 lane per (row, token) pair or per block. So the 1-row
//! `vec_dot` and the tiled GEMM agree, and batched and single-token decoding give the same
//! numbers.
//!
//! The tile computes 4 weight rows × `4·G` tokens. Activations are first packed in groups of 4
//! tokens ([`Packed4`]): the 4-byte groups of the 4 tokens interleaved, so one 128-bit
//! broadcast feeds a `vpdpbusd` whose 16 lanes are the (row, token) pairs, and one
//! `vpermt2d` lays the matching weight bytes of the 4 rows out for it. No horizontal sums are
//! needed, and each weight block is unpacked once per `4·G` tokens.

use super::block::{blocks, blocks_mut, Block, Half};
use super::quants::block32::QK;
use super::quants::q4_0::BlockQ4_0;
use super::quants::q4_1::BlockQ4_1;
use super::quants::q4_k::BlockQ4K;
use super::quants::q4_k::ScalesK4;
use super::quants::q5_0::BlockQ5_0;
use super::quants::q5_1::BlockQ5_1;
use super::quants::q5_k::BlockQ5K;
use super::quants::q6_k::BlockQ6K;
use super::quants::q8_0::BlockQ8_0;
use super::quants::q8_1::BlockQ8_1;
use super::quants::q8_k::BlockQ8K;
use super::quants::superblock::QK_K;
use super::{Gemv, GgmlType, Tile, VecDot};
use std::arch::x86_64::*;

/// Whether this CPU can run the kernels of this module.
pub fn available() -> bool {
    super::x86::avx2_available()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// The 1-row kernel of a weight type, if this module has one. Only sound if [`available`].
pub fn vec_dot(ty: GgmlType) -> Option<VecDot> {
    Some(match ty {
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        _ => return None,
    })
}

/// Token groups per tile: 4 rows × 16 tokens.
const G: usize = 4;

/// The tiled GEMM of a weight type, if this module has one. Only sound if [`available`].
pub fn tile(ty: GgmlType) -> Option<Tile> {
    type Pack = fn(usize, &[&[u8]], &mut [u8]);
    type TileFn = fn(usize, &[u8], &[u8], &mut [f32]);
    let (pack, tile): (Pack, TileFn) = match ty {
        GgmlType::Q4_0 => (pack_q8_0, q4_0_tile),
        GgmlType::Q5_0 => (pack_q8_0, q5_0_tile),
        GgmlType::Q8_0 => (pack_q8_0, q8_0_tile),
        GgmlType::Q4_1 => (pack_q8_1, q4_1_tile),
        GgmlType::Q5_1 => (pack_q8_1, q5_1_tile),
        GgmlType::Q4_K => (pack_q8_k, q4_k_tile),
        GgmlType::Q6_K => (pack_q8_k, q6_k_tile),
        _ => return None,
    };
    let group_bytes = if ty.block_size() == QK_K {
        |n| n / QK_K * size_of::<Packed4K>()
    } else {
        |n| n / QK * size_of::<Packed4>()
    };
    Some(Tile {
        rows: 4,
        tokens: 4 * G,
        group: 4,
        group_bytes,
        pack,
        tile,
    })
}

/// Weight rows per group of the single-token kernels.
const GEMV_ROWS: usize = 16;
/// How far ahead (in blocks) the single-token kernels prefetch each of their 16 rows: the
/// hardware prefetchers alone left decode at about half the memory bandwidth (4 and 16 were
/// measured too; 8 was best by a few per cent). Near a group's end the prefetches move on to
/// the next group's rows, which matters for short rows (up to a third faster decoding).
const PREFETCH_BLOCKS: usize = 8;

// The 1-token kernels gather the first 4 bytes of each block: `d`, then `m` for the Q8_1 family.
const _: () = assert!(
    std::mem::offset_of!(BlockQ4_0, d) == 0
        && std::mem::offset_of!(BlockQ5_0, d) == 0
        && std::mem::offset_of!(BlockQ8_0, d) == 0
        && std::mem::offset_of!(BlockQ4_1, d) == 0
        && std::mem::offset_of!(BlockQ4_1, m) == 2
        && std::mem::offset_of!(BlockQ5_1, d) == 0
        && std::mem::offset_of!(BlockQ5_1, m) == 2
);

/// The 16-row kernel for single tokens of a weight type, if this module has one. Only sound if
/// [`available`].
pub fn gemv(ty: GgmlType) -> Option<Gemv> {
    let gemv: fn(usize, &[u8], &[u8], &mut [f32]) = match ty {
        GgmlType::Q4_0 => q4_0_gemv,
        GgmlType::Q5_0 => q5_0_gemv,
        GgmlType::Q8_0 => q8_0_gemv,
        GgmlType::Q4_1 => q4_1_gemv,
        GgmlType::Q5_1 => q5_1_gemv,
        _ => return None,
    };
    Some(Gemv {
        rows: GEMV_ROWS,
        gemv,
    })
}

/// One activation block of 4 tokens: byte `16·g + 4·t + k` is element `4·g + k` of token `t`;
/// `d` holds the tokens' scales (f32 LE, widened from f16) and `aux` their `Σ q` (i32 LE, Q8_0)
/// or `s` (f32 LE, Q8_1).
#[derive(Clone, Copy)]
#[repr(C)]
struct Packed4 {
    qs: [u8; 4 * QK],
    d: [u8; 16],
    aux: [u8; 16],
}
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for Packed4 {}

/// Writes the quants of token `t` into an interleaved block: 4-byte group `g` to `16·g + 4·t`.
fn interleave(q: &[i8], t: usize, dst: &mut [u8]) {
    for (d, q) in dst.chunks_exact_mut(16).zip(q.chunks_exact(4)) {
        let q: [i8; 4] = q.try_into().expect("4 bytes");
        d[4 * t..][..4].copy_from_slice(&q.map(|q| q as u8));
    }
}

/// Packs up to 4 activation rows of `n` elements into blocks of [`Packed4`] (`dst` zeroed: the
/// bytes of missing tokens are left as they are); `words(block)` gives a token's `(d, aux)`.
fn pack<A: Block>(
    rows: &[&[u8]],
    dst: &mut [u8],
    quants: impl Fn(&A) -> &[i8; QK],
    words: impl Fn(&A) -> (f32, [u8; 4]),
) {
    assert!(rows.len() <= 4, "at most 4 tokens per group");
    let dst = blocks_mut::<Packed4>(dst);
    for (t, row) in rows.iter().enumerate() {
        let row = blocks::<A>(row);
        assert_eq!(row.len(), dst.len(), "activation row");
        for (p, a) in dst.iter_mut().zip(row) {
            interleave(quants(a), t, &mut p.qs);
            let (d, aux) = words(a);
            p.d[4 * t..][..4].copy_from_slice(&d.to_le_bytes());
            p.aux[4 * t..][..4].copy_from_slice(&aux);
        }
    }
}

fn pack_q8_0(_n: usize, rows: &[&[u8]], dst: &mut [u8]) {
    pack::<BlockQ8_0>(
        rows,
        dst,
        |a| &a.qs,
        |a| {
            let sum: i32 = a.qs.iter().map(|&q| i32::from(q)).sum();
            (a.d.to_f32(), sum.to_le_bytes())
        },
    );
}

fn pack_q8_1(_n: usize, rows: &[&[u8]], dst: &mut [u8]) {
    pack::<BlockQ8_1>(
        rows,
        dst,
        |a| &a.qs,
        |a| (a.d.to_f32(), a.s.to_f32().to_le_bytes()),
    );
}

/// One Q8_K block of 4 tokens, interleaved like [`Packed4`]; `bsums` holds the 16-element
/// group sums, group `j` of token `t` at `16·j + 4·t` (i32 LE).
#[derive(Clone, Copy)]
#[repr(C)]
struct Packed4K {
    qs: [u8; 4 * QK_K],
    d: [u8; 16],
    bsums: [u8; 4 * QK_K / 4],
}
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for Packed4K {}

fn pack_q8_k(_n: usize, rows: &[&[u8]], dst: &mut [u8]) {
    assert!(rows.len() <= 4, "at most 4 tokens per group");
    let dst = blocks_mut::<Packed4K>(dst);
    for (t, row) in rows.iter().enumerate() {
        let row = blocks::<BlockQ8K>(row);
        assert_eq!(row.len(), dst.len(), "activation row");
        for (p, a) in dst.iter_mut().zip(row) {
            interleave(&a.qs, t, &mut p.qs);
            p.d[4 * t..][..4].copy_from_slice(&a.d);
            for j in 0..QK_K / 16 {
                p.bsums[16 * j + 4 * t..][..4].copy_from_slice(&a.bsum(j).to_le_bytes());
            }
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load16(x: &[u8; 16]) -> __m128i {
    // SAFETY: `x` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(x.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load32<T: Copy>(x: &[T; 32]) -> __m256i {
    const { assert!(size_of::<T>() == 1) };
    // SAFETY: `x` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(x.as_ptr().cast()) }
}

/// The 32 nibbles of 16 bytes in ggml's order: low nibbles (elements 0..16), then high ones.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn nibbles(qs: &[u8; 16]) -> __m256i {
    let both = _mm256_broadcastsi128_si256(load16(qs));
    let shifted = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
}

/// Adds 16 to byte `e` where bit `e` of the little-endian `qh` is set (the fifth bit).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn with_fifth_bits(u: __m256i, qh: [u8; 4]) -> __m256i {
    _mm256_mask_add_epi8(u, u32::from_le_bytes(qh), u, _mm256_set1_epi8(0x10))
}

// Unsigned weight bytes `q + off` of one block (the offsets are the `OFF` of `block32!`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn unpack_q4_0(w: &BlockQ4_0) -> __m256i {
    nibbles(&w.qs)
}
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn unpack_q5_0(w: &BlockQ5_0) -> __m256i {
    with_fifth_bits(nibbles(&w.qs), w.qh)
}
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn unpack_q8_0(w: &BlockQ8_0) -> __m256i {
    _mm256_xor_si256(load32(&w.qs), _mm256_set1_epi8(i8::MIN))
}
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn unpack_q4_1(w: &BlockQ4_1) -> __m256i {
    nibbles(&w.qs)
}
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn unpack_q5_1(w: &BlockQ5_1) -> __m256i {
    with_fifth_bits(nibbles(&w.qs), w.qh)
}

/// The totals of 16 vectors of 8 i32 lanes, in order (an add tree: no lane is dropped, so the
/// integer totals are exact).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn sum16(v: &[__m256i; 16]) -> __m512i {
    sum16_joined(std::array::from_fn(|i| join(v[2 * i], v[2 * i + 1])))
}

/// [`sum16`] of the vectors `z[i] = [v[2i] | v[2i+1]]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn sum16_joined(z: [__m512i; 8]) -> __m512i {
    // Each 128-bit chunk is summed per vector.
    let pair = |a, b| _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    let quad = |a, b| _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    // Chunk c, lane j of t0: the chunk-c total of z[j] (t1: of z[4 + j]).
    let t0 = quad(pair(z[0], z[1]), pair(z[2], z[3]));
    let t1 = quad(pair(z[4], z[5]), pair(z[6], z[7]));
    // Chunks 0 + 1 are v[2j], chunks 2 + 3 are v[2j + 1].
    let halves = |t| _mm512_add_epi32(t, _mm512_shuffle_i32x4::<0b10_11_00_01>(t, t));
    let (u0, u1) = (halves(t0), halves(t1));
    // [v0 v2 v4 v6 | v1 v3 v5 v7 | v8 v10 v12 v14 | v9 v11 v13 v15], then in order.
    let mixed = _mm512_shuffle_i32x4::<0b10_00_10_00>(u0, u1);
    let order = _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
    _mm512_permutexvar_epi32(order, mixed)
}

/// 16 f16 values widened to f32 (exact).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn widen16(h: &[u16; 16]) -> __m512 {
    // SAFETY: `h` is 32 readable bytes; the load is unaligned.
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(h.as_ptr().cast()) })
}

/// 4 f16 values widened to f32, value `r` in lanes `4r..4r + 4` (one weight row per lane group).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn per_row(h: [Half; 4]) -> __m512 {
    let [a, b, c, d] = h.map(|h| h.to_bits() as i16);
    let x = _mm_cvtph_ps(_mm_setr_epi16(a, b, c, d, 0, 0, 0, 0));
    let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(x))
}

/// 16 bytes broadcast to the four 128-bit chunks (token `t` of the group in lanes `4r + t`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn per_token(x: &[u8]) -> __m512i {
    let x: &[u8; 16] = x[..16].try_into().expect("16 bytes");
    _mm512_broadcast_i32x4(load16(x))
}

/// Kernels of one 32-element block format: `$off` is the offset of its unpacked bytes
/// (0 for the Q8_1 family, whose `m·s` term takes the f16 fields `$min` picks).
macro_rules! block32 {
    (
        $entry:ident, $row:ident, $tile_entry:ident, $tile:ident, $gemv_entry:ident, $gemv:ident,
        $unpack:ident, $w:ty, $a:ty, $off:expr, $min:expr
    ) => {
        fn $gemv_entry(n: usize, w: &[u8], a: &[u8], out: &mut [f32]) {
            let (w, a) = (blocks::<$w>(w), blocks::<$a>(a));
            assert!(
                a.len() * QK == n && w.len() == out.len() * a.len() && out.len() % GEMV_ROWS == 0,
                "gemv sizes"
            );
            // SAFETY: only handed out by `gemv`, whose caller checked `available`.
            unsafe { $gemv(w, a, out) }
        }

        /// 16 rows at a time, one f32 lane per row: lane `r` runs the f32 steps of row `r`'s
        /// `vec_dot` in the same order, while the independent rows fill the pipeline.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn $gemv(w: &[$w], a: &[$a], out: &mut [f32]) {
            let min: Option<(fn(&$w) -> Half, fn(&$a) -> Half)> = $min;
            let nb = a.len();
            // Lane r gathers the first 4 bytes of row r's block: `d`, then `m` (Q8_1 family).
            let row_offsets = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32((nb * size_of::<$w>()) as i32),
            );
            let zero = _mm256_setzero_si256();
            for (w, out) in w
                .chunks_exact(GEMV_ROWS * nb)
                .zip(out.chunks_exact_mut(GEMV_ROWS))
            {
                let mut acc = _mm512_set1_ps(-0.0);
                for (b, a) in a.iter().enumerate() {
                    let q = load32(&a.qs);
                    let q2 = _mm512_broadcast_i64x4(q);
                    let mut z = [_mm512_setzero_si512(); GEMV_ROWS / 2];
                    // Each row `PREFETCH_BLOCKS` columns ahead, in the next group's rows once
                    // this group's end is that near (short rows). Past the task's last group
                    // this names addresses that are never read (a prefetch does not fault),
                    // hence `wrapping_add`.
                    let ahead = b + PREFETCH_BLOCKS;
                    let first = if ahead < nb {
                        ahead
                    } else {
                        GEMV_ROWS * nb + ahead - nb
                    };
                    for r in 0..GEMV_ROWS {
                        let p = w.as_ptr().wrapping_add(first + r * nb);
                        _mm_prefetch::<_MM_HINT_T0>(p.cast());
                    }
                    for (i, z) in z.iter_mut().enumerate() {
                        let u = join(
                            $unpack(&w[2 * i * nb + b]),
                            $unpack(&w[(2 * i + 1) * nb + b]),
                        );
                        *z = _mm512_dpbusd_epi32(*z, u, q2);
                    }
                    let mut isum = sum16_joined(z);
                    if $off != 0 {
                        let off = hsum8(_mm256_dpbusd_epi32(
                            zero,
                            _mm256_set1_epi8($off as u8 as i8),
                            q,
                        ));
                        isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(off));
                    }
                    // SAFETY: lane r reads 4 bytes at the start of block b of row r, inside `w`
                    // (every block is longer than 4 bytes).
                    let words =
                        unsafe { _mm512_i32gather_epi32::<1>(row_offsets, w[b..].as_ptr().cast()) };
                    let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words));
                    let da = _mm512_set1_ps(a.d.to_f32());
                    let mut terms = _mm512_mul_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(isum));
                    if let Some((_, s)) = min {
                        let m =
                            _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(words)));
                        terms =
                            _mm512_add_ps(terms, _mm512_mul_ps(m, _mm512_set1_ps(s(a).to_f32())));
                    }
                    acc = _mm512_add_ps(acc, terms);
                }
                // SAFETY: `out` is 16 writable f32; the store is unaligned.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc) };
            }
        }

        fn $entry(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let (w, a) = (blocks::<$w>(w), blocks::<$a>(a));
            assert!(a.len() == w.len() && w.len() * QK == n, "activation row");
            // SAFETY: only handed out by `vec_dot`, whose caller checked `available`.
            unsafe { $row(w, a) }
        }

        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn $row(w: &[$w], a: &[$a]) -> f32 {
            const OFF: i8 = $off as u8 as i8;
            let min: Option<(fn(&$w) -> Half, fn(&$a) -> Half)> = $min;
            let zero = _mm256_setzero_si256();
            let mut acc = -0.0f32;
            // 16 blocks at a time: their exact integer sums land in the 16 lanes of one vector.
            for (w, a) in w.chunks(16).zip(a.chunks(16)) {
                let mut isums = [zero; 16];
                let (mut dw, mut da, mut m, mut s) =
                    ([0u16; 16], [0u16; 16], [0u16; 16], [0u16; 16]);
                for (i, (w, a)) in w.iter().zip(a).enumerate() {
                    let q = load32(&a.qs);
                    let p = _mm256_dpbusd_epi32(zero, $unpack(w), q);
                    isums[i] = if OFF == 0 {
                        p
                    } else {
                        _mm256_sub_epi32(p, _mm256_dpbusd_epi32(zero, _mm256_set1_epi8(OFF), q))
                    };
                    (dw[i], da[i]) = (w.d.to_bits(), a.d.to_bits());
                    if let Some((wm, as_)) = min {
                        (m[i], s[i]) = (wm(w).to_bits(), as_(a).to_bits());
                    }
                }
                let isum = _mm512_cvtepi32_ps(sum16(&isums));
                let mut terms = _mm512_mul_ps(_mm512_mul_ps(widen16(&dw), widen16(&da)), isum);
                if min.is_some() {
                    terms = _mm512_add_ps(terms, _mm512_mul_ps(widen16(&m), widen16(&s)));
                }
                let mut t = [0f32; 16];
                // SAFETY: `t` is 64 writable bytes; the store is unaligned.
                unsafe { _mm512_storeu_ps(t.as_mut_ptr(), terms) };
                for v in &t[..w.len()] {
                    acc += v;
                }
            }
            acc
        }

        fn $tile_entry(n: usize, w: &[u8], packed: &[u8], out: &mut [f32]) {
            let (rows, packed) = tile_operands::<$w, Packed4>(n / QK, w, packed, out);
            // SAFETY: only handed out by `tile`, whose caller checked `available`.
            unsafe { $tile(rows, packed, out) }
        }

        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn $tile(w: [&[$w]; 4], a: &[Packed4], out: &mut [f32]) {
            let min: Option<(fn(&$w) -> Half, fn(&$a) -> Half)> = $min;
            let nb = w[0].len();
            let groups = token_groups(a, nb);
            let mut acc = [_mm512_set1_ps(-0.0); G];
            for b in 0..nb {
                let u: [__m256i; 4] = std::array::from_fn(|r| $unpack(&w[r][b]));
                let dots = chunk_dots(u, groups.map(|a| &a[b].qs));
                let isum = dots.map(|[d0, d1]| _mm512_add_epi32(d0, d1));
                let dw = per_row(std::array::from_fn(|r| w[r][b].d));
                for ((acc, isum), a) in acc.iter_mut().zip(isum).zip(groups) {
                    let a = &a[b];
                    let isum = if $off == 0 {
                        isum
                    } else {
                        let off = _mm512_mullo_epi32(per_token(&a.aux), _mm512_set1_epi32($off));
                        _mm512_sub_epi32(isum, off)
                    };
                    let da = _mm512_castsi512_ps(per_token(&a.d));
                    let mut term = _mm512_mul_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(isum));
                    if let Some((wm, _)) = min {
                        let m = per_row(std::array::from_fn(|r| wm(&w[r][b])));
                        let s = _mm512_castsi512_ps(per_token(&a.aux));
                        term = _mm512_add_ps(term, _mm512_mul_ps(m, s));
                    }
                    *acc = _mm512_add_ps(*acc, term);
                }
            }
            store_tile(acc, out);
        }
    };
}

block32!(
    q4_0,
    q4_0_row,
    q4_0_tile,
    q4_0_tile_impl,
    q4_0_gemv,
    q4_0_gemv_impl,
    unpack_q4_0,
    BlockQ4_0,
    BlockQ8_0,
    8,
    None
);
block32!(
    q5_0,
    q5_0_row,
    q5_0_tile,
    q5_0_tile_impl,
    q5_0_gemv,
    q5_0_gemv_impl,
    unpack_q5_0,
    BlockQ5_0,
    BlockQ8_0,
    16,
    None
);
block32!(
    q8_0,
    q8_0_row,
    q8_0_tile,
    q8_0_tile_impl,
    q8_0_gemv,
    q8_0_gemv_impl,
    unpack_q8_0,
    BlockQ8_0,
    BlockQ8_0,
    128,
    None
);
block32!(
    q4_1,
    q4_1_row,
    q4_1_tile,
    q4_1_tile_impl,
    q4_1_gemv,
    q4_1_gemv_impl,
    unpack_q4_1,
    BlockQ4_1,
    BlockQ8_1,
    0,
    Some((|w| w.m, |a| a.s))
);
block32!(
    q5_1,
    q5_1_row,
    q5_1_tile,
    q5_1_tile_impl,
    q5_1_gemv,
    q5_1_gemv_impl,
    unpack_q5_1,
    BlockQ5_1,
    BlockQ8_1,
    0,
    Some((|w| w.m, |a| a.s))
);

/// Lane `4r + t` picks entry `8r + g` of `[lo | hi]` (row r's 4-byte group or scale `g`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn spread_index(g: i32) -> __m512i {
    _mm512_setr_epi32(
        g,
        g,
        g,
        g,
        8 + g,
        8 + g,
        8 + g,
        8 + g,
        16 + g,
        16 + g,
        16 + g,
        16 + g,
        24 + g,
        24 + g,
        24 + g,
        24 + g,
    )
}

/// `[a | b]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn join(a: __m256i, b: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b)
}

/// 32 unsigned weight bytes of each of 4 rows dotted with the 32 matching interleaved activation
/// bytes (`a[j]`) of each token group: lane `4r + t` of `[j][h]` is the exact sum over
/// elements `16h..16h + 16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn chunk_dots(u: [__m256i; 4], a: [&[u8; 128]; G]) -> [[__m512i; 2]; G] {
    let (lo, hi) = (join(u[0], u[1]), join(u[2], u[3]));
    let half = |h: usize| {
        let mut dots = [_mm512_setzero_si512(); G];
        for g in 4 * h..4 * h + 4 {
            let wv = _mm512_permutex2var_epi32(lo, spread_index(g as i32), hi);
            for (dot, a) in dots.iter_mut().zip(a) {
                let a: &[u8; 16] = a[16 * g..][..16].try_into().expect("16 bytes");
                *dot = _mm512_dpbusd_epi32(*dot, wv, _mm512_broadcast_i32x4(load16(a)));
            }
        }
        dots
    };
    let (d0, d1) = (half(0), half(1));
    std::array::from_fn(|j| [d0[j], d1[j]])
}

/// Lane `4r + t`: `i32` value `s` of row `r` (`v[r]`, up to 8 values per row).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn per_row_i32(v: &[[i32; 8]; 4], s: usize) -> __m512i {
    // SAFETY: each row is 32 readable bytes; the loads are unaligned.
    let rows = v.map(|r| unsafe { _mm256_loadu_si256(r.as_ptr().cast()) });
    _mm512_permutex2var_epi32(
        join(rows[0], rows[1]),
        spread_index(s as i32),
        join(rows[2], rows[3]),
    )
}

/// The f32 steps of `ScalesK4::dot_by` for 16 (row, token) lanes.
fn q4_k_tile(n: usize, w: &[u8], packed: &[u8], out: &mut [f32]) {
    let (rows, packed) = tile_operands::<BlockQ4K, Packed4K>(n / QK_K, w, packed, out);
    // SAFETY: only handed out by `tile`, whose caller checked `available`.
    unsafe { q4_k_tile_impl(rows, packed, out) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q4_k_tile_impl(w: [&[BlockQ4K]; 4], a: &[Packed4K], out: &mut [f32]) {
    let nb = w[0].len();
    let groups = token_groups(a, nb);
    let low4 = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm512_set1_ps(-0.0); G];
    for b in 0..nb {
        let w: [&BlockQ4K; 4] = w.map(|w| &w[b]);
        let (mut scales, mut mins) = ([[0i32; 8]; 4], [[0i32; 8]; 4]);
        for r in 0..4 {
            let (sc, m) = k4_scales_mins(&w[r].scales.scales);
            for s in 0..8 {
                scales[r][s] = i32::from((sc >> (8 * s)) as u8);
                mins[r][s] = i32::from((m >> (8 * s)) as u8);
            }
        }
        let mut isum = [_mm512_setzero_si512(); G];
        for j in 0..4 {
            let q = w.map(|w| load32(w.qs[32 * j..][..32].try_into().expect("32 bytes")));
            let halves = [
                q.map(|q| _mm256_and_si256(q, low4)),
                q.map(|q| _mm256_and_si256(_mm256_srli_epi16::<4>(q), low4)),
            ];
            for (h, u) in halves.into_iter().enumerate() {
                let c = 2 * j + h;
                let dots = chunk_dots(
                    u,
                    groups.map(|a| a[b].qs[128 * c..][..128].try_into().expect("128 bytes")),
                );
                let sc = per_row_i32(&scales, c);
                for (isum, [d0, d1]) in isum.iter_mut().zip(dots) {
                    *isum =
                        _mm512_add_epi32(*isum, _mm512_mullo_epi32(_mm512_add_epi32(d0, d1), sc));
                }
            }
        }
        let d = per_row(w.map(|w| w.scales.d));
        let dmin = per_row(w.map(|w| w.scales.dmin));
        for ((acc, isum), a) in acc.iter_mut().zip(isum).zip(groups) {
            let a = &a[b];
            let mut summs = _mm512_setzero_si512();
            for s in 0..8 {
                let bs = _mm512_add_epi32(
                    per_token(&a.bsums[32 * s..]),
                    per_token(&a.bsums[32 * s + 16..]),
                );
                summs = _mm512_add_epi32(summs, _mm512_mullo_epi32(per_row_i32(&mins, s), bs));
            }
            let da = _mm512_castsi512_ps(per_token(&a.d));
            let term = _mm512_sub_ps(
                _mm512_mul_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(isum)),
                _mm512_mul_ps(_mm512_mul_ps(dmin, da), _mm512_cvtepi32_ps(summs)),
            );
            *acc = _mm512_add_ps(*acc, term);
        }
    }
    store_tile(acc, out);
}

/// The 32 unsigned 6-bit quants of chunk `c` (elements `32c..32c + 32`) of a Q6_K block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q6_k_chunk(w: &BlockQ6K, c: usize) -> __m256i {
    let (half, g) = (c / 4, c % 4);
    let ql = load32(
        w.ql[64 * half + 32 * (g % 2)..][..32]
            .try_into()
            .expect("32 bytes"),
    );
    let qh = load32(w.qh[32 * half..][..32].try_into().expect("32 bytes"));
    let low = _mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * (g / 2) as i32));
    let high = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g as i32));
    let low = _mm256_and_si256(low, _mm256_set1_epi8(0x0F));
    let high = _mm256_slli_epi16::<4>(_mm256_and_si256(high, _mm256_set1_epi8(3)));
    _mm256_or_si256(low, high)
}

fn q6_k_tile(n: usize, w: &[u8], packed: &[u8], out: &mut [f32]) {
    let (rows, packed) = tile_operands::<BlockQ6K, Packed4K>(n / QK_K, w, packed, out);
    // SAFETY: only handed out by `tile`, whose caller checked `available`.
    unsafe { q6_k_tile_impl(rows, packed, out) }
}

/// The scalar twin's `(d·d_a)·isum` with `isum = Σ_s scale_s·Σ (u - 32)·a` over the 16
/// sub-blocks of 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q6_k_tile_impl(w: [&[BlockQ6K]; 4], a: &[Packed4K], out: &mut [f32]) {
    let nb = w[0].len();
    let groups = token_groups(a, nb);
    let mut acc = [_mm512_set1_ps(-0.0); G];
    for b in 0..nb {
        let w: [&BlockQ6K; 4] = w.map(|w| &w[b]);
        let scales: [[[i32; 8]; 4]; 2] = std::array::from_fn(|h| {
            w.map(|w| std::array::from_fn(|s| i32::from(w.scales[8 * h + s])))
        });
        let mut isum = [_mm512_setzero_si512(); G];
        for c in 0..8 {
            let a_c = groups.map(|a| a[b].qs[128 * c..][..128].try_into().expect("128 bytes"));
            let dots = chunk_dots(w.map(|w| q6_k_chunk(w, c)), a_c);
            for (isum, (dots, a)) in isum.iter_mut().zip(dots.into_iter().zip(groups)) {
                for (h, dot) in dots.into_iter().enumerate() {
                    let s = 2 * c + h;
                    let bs = _mm512_slli_epi32::<5>(per_token(&a[b].bsums[16 * s..]));
                    let sc = per_row_i32(&scales[s / 8], s % 8);
                    *isum =
                        _mm512_add_epi32(*isum, _mm512_mullo_epi32(_mm512_sub_epi32(dot, bs), sc));
                }
            }
        }
        let d = per_row(w.map(|w| w.d));
        for ((acc, isum), a) in acc.iter_mut().zip(isum).zip(groups) {
            let da = _mm512_castsi512_ps(per_token(&a[b].d));
            let term = _mm512_mul_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(isum));
            *acc = _mm512_add_ps(*acc, term);
        }
    }
    store_tile(acc, out);
}

// ---- 1-row super-block kernels ----
//
// Per super-block, the integer part `Σ_s scale_s·(q_s·a_s)` is computed exactly in i32 lanes:
// `vpmaddubsw` multiplies the unsigned quants (at most 63, so its i16 pair sums cannot
// saturate) with the activation bytes, and `vpdpwssd` multiplies those i16 sums by the
// sub-block scales (as i16) into the i32 accumulator. One exact horizontal sum per super-block
// then feeds the scalar twin's f32 steps, super-blocks summed in order from -0.0.

/// The 8 sub-block scales (bytes 0..8 of the first word) and minimums (of the second) of a
/// Q4_K/Q5_K block: [`super::quants::superblock::scale_min_k4`] for all sub-blocks at once,
/// with word operations.
#[inline]
fn k4_scales_mins(s: &[u8; 12]) -> (u64, u64) {
    const M6: u32 = 0x3F3F_3F3F;
    const M4: u32 = 0x0F0F_0F0F;
    const M2: u32 = 0x0303_0303;
    let word = |i: usize| u32::from_le_bytes(s[4 * i..][..4].try_into().expect("4 bytes"));
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let scales_hi = (u2 & M4) | (((u0 >> 6) & M2) << 4);
    let mins_hi = ((u2 >> 4) & M4) | (((u1 >> 6) & M2) << 4);
    (
        u64::from(u0 & M6) | (u64::from(scales_hi) << 32),
        u64::from(u1 & M6) | (u64::from(mins_hi) << 32),
    )
}

/// Two f16 values (bits) widened to f32 with F16C (exact).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn f16_pair(a: Half, b: Half) -> (f32, f32) {
    let bits = u32::from(a.to_bits()) | (u32::from(b.to_bits()) << 16);
    let x = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    (_mm_cvtss_f32(x), _mm_cvtss_f32(_mm_movehdup_ps(x)))
}

/// The exact total of 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn hsum8(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// The 16 lanes of a vector of i32 folded into 8 (exact).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn fold8(v: __m512i) -> __m256i {
    _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load64<T: Copy>(x: &[T]) -> __m512i {
    const { assert!(size_of::<T>() == 1) };
    let x = &x[..64];
    // SAFETY: `x` is 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(x.as_ptr().cast()) }
}

/// 32 bytes in both halves of a vector.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn broadcast32(x: &[u8]) -> __m512i {
    _mm512_broadcast_i64x4(load32(x[..32].try_into().expect("32 bytes")))
}

/// `[set1(a) | set1(b)]` for 16-bit lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn halves16(a: i16, b: i16) -> __m512i {
    join(_mm256_set1_epi16(a), _mm256_set1_epi16(b))
}

/// The Q8_K group sums as 16 i16 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn bsums16(a: &BlockQ8K) -> __m256i {
    // SAFETY: `bsums` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(a.bsums.as_ptr().cast()) }
}

/// One Q4_K/Q5_K block (low nibbles `qs`, fifth bits `qh` if any) dotted with a Q8_K block:
/// the f32 steps of `ScalesK4::dot_by`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn k4_block(sc: &ScalesK4, qs: &[u8; QK_K / 2], qh: Option<&[u8; 32]>, a: &BlockQ8K) -> f32 {
    let (scales, mins) = k4_scales_mins(&sc.scales);
    let scales = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(scales as i64)));
    let shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    let low4 = _mm512_set1_epi8(0x0F);
    let high = qh.map(|h| broadcast32(h));
    let mut acc = _mm512_setzero_si512();
    for j in 0..4 {
        // Elements 64j..64j + 64: sub-block 2j (low nibbles), then 2j + 1 (high nibbles).
        let q = broadcast32(&qs[32 * j..]);
        let mut u = _mm512_and_si512(_mm512_srlv_epi64(q, shift), low4);
        if let Some(h) = high {
            let bits = join(
                _mm256_set1_epi8((1u8 << (2 * j)) as i8),
                _mm256_set1_epi8((1u8 << (2 * j + 1)) as i8),
            );
            let set = _mm512_test_epi8_mask(h, bits);
            u = _mm512_mask_add_epi8(u, set, u, _mm512_set1_epi8(0x10));
        }
        let p = _mm512_maddubs_epi16(u, load64(&a.qs[64 * j..]));
        let s = _mm512_permutexvar_epi16(halves16(2 * j as i16, 2 * j as i16 + 1), scales);
        acc = _mm512_dpwssd_epi32(acc, p, s);
    }
    let isum = hsum8(fold8(acc));
    // Each minimum twice, against the two group sums of its sub-block.
    let m = _mm_cvtsi64_si128(mins as i64);
    let m = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
    let summs = hsum8(_mm256_madd_epi16(bsums16(a), m));
    let (d, dmin) = f16_pair(sc.d, sc.dmin);
    let (d, dmin) = (d * a.d(), dmin * a.d());
    d * isum as f32 - dmin * summs as f32
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q4_k_row(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let mut acc = -0.0f32;
    for (w, a) in w.iter().zip(a) {
        acc += k4_block(&w.scales, &w.qs, None, a);
    }
    acc
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q5_k_row(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let mut acc = -0.0f32;
    for (w, a) in w.iter().zip(a) {
        acc += k4_block(&w.scales, &w.qs, Some(&w.qh), a);
    }
    acc
}

/// One Q6_K block dotted with a Q8_K block: `(d·d_a)·isum` with
/// `isum = Σ_s scale_s·Σ u·a - 32·Σ_s scale_s·bsum_s` over the 16 sub-blocks of 16 (exact: the
/// true total fits in i32).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q6_k_block(w: &BlockQ6K, a: &BlockQ8K) -> f32 {
    // SAFETY: `scales` is 16 readable bytes; the load is unaligned.
    let sc = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(w.scales.as_ptr().cast()) });
    let scales = _mm512_castsi256_si512(sc);
    let low4 = _mm512_set1_epi8(0x0F);
    let bits45 = _mm512_set1_epi8(0x30);
    let mut acc = _mm512_setzero_si512();
    for half in 0..2 {
        let ql = load64(&w.ql[64 * half..]);
        let qh = broadcast32(&w.qh[32 * half..]);
        // Groups 0 and 1 of the half: low nibbles, bit pairs 0 and 2 of `qh` moved to bit 4;
        // groups 2 and 3: high nibbles, bit pairs 4 and 6.
        let hi01 = _mm512_sllv_epi64(qh, _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2));
        let hi23 = _mm512_srlv_epi64(qh, _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2));
        let u01 = _mm512_or_si512(_mm512_and_si512(ql, low4), _mm512_and_si512(hi01, bits45));
        let u23 = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low4),
            _mm512_and_si512(hi23, bits45),
        );
        for (k, u) in [(2 * half, u01), (2 * half + 1, u23)] {
            // Elements 64k..64k + 64: sub-blocks 4k..4k + 4, one per 128-bit chunk.
            let p = _mm512_maddubs_epi16(u, load64(&a.qs[64 * k..]));
            let k = 4 * k as i16;
            let idx = join(
                _mm256_set_m128i(_mm_set1_epi16(k + 1), _mm_set1_epi16(k)),
                _mm256_set_m128i(_mm_set1_epi16(k + 3), _mm_set1_epi16(k + 2)),
            );
            acc = _mm512_dpwssd_epi32(acc, p, _mm512_permutexvar_epi16(idx, scales));
        }
    }
    let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums16(a), sc));
    let isum = hsum8(_mm256_sub_epi32(fold8(acc), offset));
    let (d, _) = f16_pair(w.d, w.d);
    (d * a.d()) * isum as f32
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q6_k_row(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut acc = -0.0f32;
    for (w, a) in w.iter().zip(a) {
        acc += q6_k_block(w, a);
    }
    acc
}

/// Safe entry points of the super-block kernels.
macro_rules! k_entry {
    ($name:ident, $row:ident, $w:ty) => {
        fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let (w, a) = (blocks::<$w>(w), blocks::<BlockQ8K>(a));
            assert!(a.len() == w.len() && w.len() * QK_K == n, "activation row");
            // SAFETY: only handed out by `vec_dot`, whose caller checked `available`.
            unsafe { $row(w, a) }
        }
    };
}
k_entry!(q4_k, q4_k_row, BlockQ4K);
k_entry!(q5_k, q5_k_row, BlockQ5K);
k_entry!(q6_k, q6_k_row, BlockQ6K);

// ---- f32 vector operations (see `super::vector`) ----

/// Elements per step of [`super::quants::float::dot_f32`]: its four 8-lane accumulators.
const F32_STEP: usize = 32;

/// [`super::quants::float::dot_f32`] 16 lanes at a time, bit for bit: its four 8-lane accumulators are held
/// two to a register, products and sums unfused as in the portable build, and the final
/// reduction is the portable one. Only handed out by `vector` after [`available`].
pub fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    // SAFETY: see above.
    unsafe { dot_f32_impl(x, y) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn dot_f32_impl(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let whole = n - n % F32_STEP;
    let (mut acc01, mut acc23) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for (x, y) in x[..whole]
        .chunks_exact(F32_STEP)
        .zip(y[..whole].chunks_exact(F32_STEP))
    {
        // SAFETY: each chunk is 32 readable f32; the loads are unaligned.
        let [x0, x1, y0, y1] = unsafe {
            [
                _mm512_loadu_ps(x.as_ptr()),
                _mm512_loadu_ps(x.as_ptr().add(16)),
                _mm512_loadu_ps(y.as_ptr()),
                _mm512_loadu_ps(y.as_ptr().add(16)),
            ]
        };
        acc01 = _mm512_add_ps(acc01, _mm512_mul_ps(x0, y0));
        acc23 = _mm512_add_ps(acc23, _mm512_mul_ps(x1, y1));
    }
    let halves = |v: __m512| {
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        _mm256_add_ps(_mm512_castps512_ps256(v), high)
    };
    // (acc0 + acc1) + (acc2 + acc3), then the portable reduction of those 8 lanes.
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` is 8 writable f32; the store is unaligned.
    unsafe {
        _mm256_storeu_ps(
            lanes.as_mut_ptr(),
            _mm256_add_ps(halves(acc01), halves(acc23)),
        )
    };
    let mut sum = wide::f32x8::new(lanes).reduce_add();
    for (&x, &y) in x[whole..n].iter().zip(&y[whole..n]) {
        sum += x * y;
    }
    sum
}

/// [`super::vector::portable_axpy`] 16 lanes at a time (elementwise, so bit for bit).
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    // SAFETY: only handed out by `vector` after [`available`].
    unsafe { axpy_impl(a, x, y) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn axpy_impl(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let whole = n - n % 16;
    let av = _mm512_set1_ps(a);
    for (x, y) in x[..whole]
        .chunks_exact(16)
        .zip(y[..whole].chunks_exact_mut(16))
    {
        // SAFETY: both chunks are 16 f32 (`y` writable); the accesses are unaligned.
        unsafe {
            let sum = _mm512_add_ps(
                _mm512_loadu_ps(y.as_ptr()),
                _mm512_mul_ps(av, _mm512_loadu_ps(x.as_ptr())),
            );
            _mm512_storeu_ps(y.as_mut_ptr(), sum);
        }
    }
    super::vector::portable_axpy(a, &x[whole..n], &mut y[whole..n]);
}

/// The `G` groups of packed activation blocks of a tile, `nb` blocks each. Not built with
/// `array::from_fn` inside the kernels: a closure there inherits their target features, so it
/// cannot be inlined into `from_fn`, and the out-of-line calls cost a tenth of the prefill time.
#[inline(always)]
fn token_groups<P>(a: &[P], nb: usize) -> [&[P]; G] {
    let mut groups = a.chunks_exact(nb);
    [(); G].map(|()| groups.next().expect("G groups of blocks"))
}

/// `R` consecutive weight rows of `nb` blocks.
fn rows_of<W: Block, const R: usize>(nb: usize, w: &[u8]) -> [&[W]; R] {
    let row_bytes = nb * size_of::<W>();
    assert_eq!(w.len(), R * row_bytes, "weight rows");
    std::array::from_fn(|r| blocks::<W>(&w[r * row_bytes..][..row_bytes]))
}

/// The 4 weight rows of a tile and its packed activation blocks, sizes checked.
fn tile_operands<'a, W: Block, P: Block>(
    nb: usize,
    w: &'a [u8],
    packed: &'a [u8],
    out: &[f32],
) -> ([&'a [W]; 4], &'a [P]) {
    let rows = rows_of::<W, 4>(nb, w);
    let packed = blocks::<P>(packed);
    assert!(packed.len() == G * nb && out.len() == 16 * G, "tile sizes");
    (rows, packed)
}

/// Writes the accumulators (lane `4r + t` of group `j`: row r, token `4j + t`) as
/// `out[r * 4G + 4j + t]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn store_tile(acc: [__m512; G], out: &mut [f32]) {
    for (j, acc) in acc.into_iter().enumerate() {
        let mut t = [0f32; 16];
        // SAFETY: `t` is 64 writable bytes; the store is unaligned.
        unsafe { _mm512_storeu_ps(t.as_mut_ptr(), acc) };
        for r in 0..4 {
            out[r * 4 * G + 4 * j..][..4].copy_from_slice(&t[4 * r..][..4]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quants::float;
    use crate::kernels::quants::superblock::scale_min_k4;
    use crate::kernels::testing::{kernel_activation_rows, kernel_weight_rows, same_f32, Rng};
    use crate::kernels::{portable_kernels, scalar_vec_dot};

    const TYPES: [GgmlType; 5] = [
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_1,
        GgmlType::Q5_1,
    ];

    const K_TYPES: [GgmlType; 3] = [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K];

    /// The 1-row kernels, bit for bit the scalar twin on random, tiny, negative, wild-scale
    /// and extreme weight rows against random and extreme activations; 37 blocks of 32
    /// exercise a partial chunk of 16.
    #[test]
    fn avx512_vec_dots_equal_scalar() {
        if !available() {
            eprintln!("no AVX-512 VNNI on this CPU: nothing to compare");
            return;
        }
        let mut rng = Rng::new(0x512);
        for ty in TYPES.into_iter().chain(K_TYPES) {
            let fast = vec_dot(ty).unwrap();
            let scalar = scalar_vec_dot(ty).unwrap();
            let act_ty = portable_kernels(ty).unwrap().act_ty;
            let block_counts: &[usize] = if ty.block_size() == QK {
                &[37]
            } else {
                &[1, 3, 7]
            };
            for &nb in block_counts {
                let n = nb * ty.block_size();
                for w in kernel_weight_rows(&mut rng, ty, nb) {
                    for a in kernel_activation_rows(&mut rng, act_ty, n) {
                        let (f, r) = (fast(n, &w, &a), scalar(n, &w, &a));
                        assert!(same_f32(f, r), "{ty}: avx512 {f} vs scalar {r}");
                    }
                }
            }
        }
    }

    /// Every output of the single-token kernel equals the scalar twin of its row, with the rows
    /// drawn from the random, tiny, negative, wild-scale and extreme kinds.
    #[test]
    fn avx512_gemv_rows_equal_scalar() {
        if !available() {
            return;
        }
        let mut rng = Rng::new(0x6E3);
        for ty in TYPES {
            let (g, scalar) = (gemv(ty).unwrap(), scalar_vec_dot(ty).unwrap());
            let act_ty = portable_kernels(ty).unwrap().act_ty;
            for nb in [1, 2, 19] {
                let n = nb * QK;
                let mut pool = Vec::new();
                while pool.len() < 2 * g.rows {
                    pool.extend(kernel_weight_rows(&mut rng, ty, nb));
                }
                // Three groups of rows in one call.
                let order: Vec<usize> = (0..3 * g.rows)
                    .map(|_| rng.below(pool.len() as u64) as usize)
                    .collect();
                let w: Vec<u8> = order.iter().flat_map(|&i| pool[i].clone()).collect();
                for a in kernel_activation_rows(&mut rng, act_ty, n) {
                    let mut out = vec![0f32; order.len()];
                    (g.gemv)(n, &w, &a, &mut out);
                    for (r, &i) in order.iter().enumerate() {
                        let want = scalar(n, &pool[i], &a);
                        assert!(
                            same_f32(out[r], want),
                            "{ty} row {r}: gemv {} vs scalar {want}",
                            out[r]
                        );
                    }
                }
            }
        }
    }

    /// Every tile output equals the scalar twin (so also every `vec_dot` at this level) for its
    /// (row, token) pair, with a partial group of tokens.
    #[test]
    fn avx512_tiles_equal_scalar() {
        if !available() {
            return;
        }
        let mut rng = Rng::new(0x7117);
        for ty in TYPES.into_iter().chain([GgmlType::Q4_K, GgmlType::Q6_K]) {
            let (dot, t) = (scalar_vec_dot(ty).unwrap(), tile(ty).unwrap());
            let act_ty = portable_kernels(ty).unwrap().act_ty;
            let n = 2 * QK_K;
            let all_rows = kernel_weight_rows(&mut rng, ty, n / ty.block_size());
            // Tiles of 4 rows: the first four kinds of weight rows, then the last four.
            for rows in [&all_rows[..4], &all_rows[all_rows.len() - 4..]] {
                let w: Vec<u8> = rows.concat();
                // 4 kinds of activations × 3, 13 tokens: the last group is partial, then zero.
                let acts: Vec<Vec<u8>> = (0..3)
                    .flat_map(|_| kernel_activation_rows(&mut rng, act_ty, n))
                    .take(13)
                    .collect();
                let gb = (t.group_bytes)(n);
                let mut packed = vec![0u8; G * gb];
                for (g, dst) in packed.chunks_exact_mut(gb).enumerate() {
                    let group: Vec<&[u8]> =
                        acts.iter().skip(4 * g).take(4).map(|a| &a[..]).collect();
                    (t.pack)(n, &group, dst);
                }
                let mut out = vec![0f32; t.rows * t.tokens];
                (t.tile)(n, &w, &packed, &mut out);
                for (r, w) in rows.iter().enumerate() {
                    for (k, a) in acts.iter().enumerate() {
                        let (o, want) = (out[r * t.tokens + k], dot(n, w, a));
                        assert!(
                            same_f32(o, want),
                            "{ty} row {r} token {k}: tile {o} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// The attention vector operations equal their portable twins bit for bit, over lengths
    /// with and without a tail and values from tiny to huge, infinities and NaN included.
    #[test]
    fn avx512_vector_ops_equal_portable() {
        if !available() {
            return;
        }
        let mut rng = Rng::new(0xF32);
        let special = [0.0, -0.0, 1e-40, -3e38, 3e38, f32::INFINITY, f32::NAN, 1.0];
        for n in [0, 1, 15, 16, 31, 32, 33, 64, 256, 1000] {
            for trial in 0..6 {
                let value = |rng: &mut Rng| {
                    let u = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    match trial {
                        0..=2 => u * 10f32.powi(trial * 6 - 6),
                        3 => u * 1e30,
                        _ => special[rng.below(special.len() as u64) as usize],
                    }
                };
                let x: Vec<f32> = (0..n).map(|_| value(&mut rng)).collect();
                let y: Vec<f32> = (0..n).map(|_| value(&mut rng)).collect();
                let (fast, twin) = (dot_f32(&x, &y), float::dot_f32(&x, &y));
                assert!(same_f32(fast, twin), "dot n={n}: {fast} vs {twin}");
                let a = value(&mut rng);
                let (mut fast, mut twin) = (y.clone(), y.clone());
                axpy(a, &x, &mut fast);
                crate::kernels::vector::portable_axpy(a, &x, &mut twin);
                for (f, t) in fast.iter().zip(&twin) {
                    assert!(same_f32(*f, *t), "axpy n={n}: {f} vs {t}");
                }
            }
        }
    }

    #[test]
    fn k4_scales_mins_unpacks_every_sub_block() {
        let mut rng = Rng::new(0x4B);
        for _ in 0..1000 {
            let mut s = [0u8; 12];
            rng.fill(&mut s);
            let (scales, mins) = k4_scales_mins(&s);
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, &s);
                assert_eq!(
                    ((scales >> (8 * j)) as u8, (mins >> (8 * j)) as u8),
                    (sc, m)
                );
            }
        }
    }

    #[test]
    fn sum16_totals_each_vector() {
        if !available() {
            return;
        }
        let mut rng = Rng::new(16);
        let lanes: Vec<i32> = (0..128).map(|_| rng.next_u64() as i32 >> 8).collect();
        // SAFETY: AVX-512 was detected above.
        let got: [i32; 16] = unsafe {
            let v: [__m256i; 16] =
                std::array::from_fn(|i| _mm256_loadu_si256(lanes[8 * i..].as_ptr().cast()));
            std::mem::transmute(sum16(&v))
        };
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, lanes[8 * i..][..8].iter().sum::<i32>(), "vector {i}");
        }
    }
}
