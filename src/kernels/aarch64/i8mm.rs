//! i8mm tiles for the 32-element block formats: two weight rows × four tokens per call. The
//! tokens are packed in pairs, 8 quants of one token then 8 of the other, so one `smmla`
//! multiplies 8 quants of both weight rows by 8 of both tokens (a 2×2 block of exact i32 dots),
//! where `sdot` would need four instructions. The f32 steps per (row, token) are `vec_dot`'s.

use super::levels::{at16, f16, load_i8, Unpack32};
use crate::kernels::block::{blocks, blocks_mut, Block, Half};
use crate::kernels::quants::block32::QK;
use crate::kernels::quants::iq4_nl::BlockIQ4NL;
use crate::kernels::quants::mxfp4::BlockMXFP4;
use crate::kernels::quants::q4_0::BlockQ4_0;
use crate::kernels::quants::q4_1::BlockQ4_1;
use crate::kernels::quants::q5_0::BlockQ5_0;
use crate::kernels::quants::q5_1::BlockQ5_1;
use crate::kernels::quants::q8_0::BlockQ8_0;
use crate::kernels::quants::q8_1::BlockQ8_1;
use crate::kernels::{GgmlType, Tile};
use std::arch::aarch64::*;
use std::arch::asm;

const ROWS: usize = 2;
const TOKENS: usize = 4;
const GROUP: usize = 2;

/// One block of two tokens' Q8_0 or Q8_1 activations (`s` is zero for Q8_0).
#[derive(Clone, Copy)]
#[repr(C)]
struct Pair32 {
    d: [Half; GROUP],
    s: [Half; GROUP],
    /// Quants `8k..8k + 8` of token 0, then the same of token 1, for k = 0..4.
    qs: [i8; GROUP * QK],
}
// SAFETY: byte fields only, alignment 1, no padding, any bits valid.
unsafe impl Block for Pair32 {}

/// The activation blocks a tile packs.
trait Act32: Block {
    fn parts(&self) -> (Half, Half, &[i8; QK]);
}

impl Act32 for BlockQ8_0 {
    fn parts(&self) -> (Half, Half, &[i8; QK]) {
        (self.d, Half::default(), &self.qs)
    }
}

impl Act32 for BlockQ8_1 {
    fn parts(&self) -> (Half, Half, &[i8; QK]) {
        (self.d, self.s, &self.qs)
    }
}

/// The i8mm tile of a weight type, if there is one and the CPU has i8mm.
pub fn tile(ty: GgmlType) -> Option<Tile> {
    if !std::arch::is_aarch64_feature_detected!("i8mm") {
        return None;
    }
    fn make<W: Unpack32, A: Act32>() -> Tile {
        Tile {
            rows: ROWS,
            tokens: TOKENS,
            group: GROUP,
            group_bytes,
            pack: pack::<A>,
            tile: run::<W>,
        }
    }
    Some(match ty {
        GgmlType::Q4_0 => make::<BlockQ4_0, BlockQ8_0>(),
        GgmlType::Q5_0 => make::<BlockQ5_0, BlockQ8_0>(),
        GgmlType::Q8_0 => make::<BlockQ8_0, BlockQ8_0>(),
        GgmlType::IQ4_NL => make::<BlockIQ4NL, BlockQ8_0>(),
        GgmlType::MXFP4 => make::<BlockMXFP4, BlockQ8_0>(),
        GgmlType::Q4_1 => make::<BlockQ4_1, BlockQ8_1>(),
        GgmlType::Q5_1 => make::<BlockQ5_1, BlockQ8_1>(),
        _ => return None,
    })
}

fn group_bytes(n: usize) -> usize {
    n / QK * size_of::<Pair32>()
}

fn pack<A: Act32>(n: usize, rows: &[&[u8]], dst: &mut [u8]) {
    let dst = blocks_mut::<Pair32>(dst);
    assert!(rows.len() <= GROUP && dst.len() == n / QK, "tile group");
    for (i, p) in dst.iter_mut().enumerate() {
        *p = Pair32 {
            d: [Half::default(); GROUP],
            s: [Half::default(); GROUP],
            qs: [0; GROUP * QK],
        };
        for (t, row) in rows.iter().enumerate() {
            let (d, s, qs) = blocks::<A>(row)[i].parts();
            (p.d[t], p.s[t]) = (d, s);
            for k in 0..QK / 8 {
                p.qs[16 * k + 8 * t..][..8].copy_from_slice(&qs[8 * k..][..8]);
            }
        }
    }
}

/// Safe entry point: only reachable through [`tile`], which checked the CPU.
fn run<W: Unpack32>(n: usize, w: &[u8], packed: &[u8], out: &mut [f32]) {
    let nb = n / QK;
    let (w, p) = (blocks::<W>(w), blocks::<Pair32>(packed));
    assert!(
        w.len() == ROWS * nb && p.len() == TOKENS / GROUP * nb,
        "tile shape"
    );
    // SAFETY: `tile` hands this out only after detecting i8mm (and so NEON) on this CPU.
    let r = unsafe { rows(w.split_at(nb), p.split_at(nb)) };
    out[..ROWS * TOKENS].copy_from_slice(r.as_flattened());
}

/// `acc` plus the 2×2 products of the 8-quant rows of `a` and `b`: lane `2i + j` gains
/// `a[8i..8i + 8]·b[8j..8j + 8]`.
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn smmla(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: i8mm is enabled for this function; registers only.
    unsafe {
        asm!(
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// Quants `8k..8k + 8` of row 0, then the same of row 1, for k = 0..4.
#[inline]
#[target_feature(enable = "neon")]
fn interleave(r0: [int8x16_t; 2], r1: [int8x16_t; 2]) -> [int8x16_t; 4] {
    let zip = |a: int8x16_t, b: int8x16_t| {
        let (a, b) = (vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b));
        (
            vreinterpretq_s8_s64(vzip1q_s64(a, b)),
            vreinterpretq_s8_s64(vzip2q_s64(a, b)),
        )
    };
    let ((a, b), (c, d)) = (zip(r0[0], r1[0]), zip(r0[1], r1[1]));
    [a, b, c, d]
}

#[target_feature(enable = "neon,i8mm")]
fn rows<W: Unpack32>(
    (w0, w1): (&[W], &[W]),
    (p0, p1): (&[Pair32], &[Pair32]),
) -> [[f32; TOKENS]; ROWS] {
    let mut acc = [[-0.0f32; TOKENS]; ROWS];
    for (((w0, w1), p0), p1) in w0.iter().zip(w1).zip(p0).zip(p1) {
        // SAFETY: NEON is enabled here.
        let (q, d, m) = unsafe {
            let q = interleave(w0.unpack(), w1.unpack());
            (q, [w0.d(), w1.d()], [w0.m(), w1.m()])
        };
        for (g, p) in [p0, p1].into_iter().enumerate() {
            let mut isum = vdupq_n_s32(0);
            for (k, q) in q.into_iter().enumerate() {
                isum = smmla(isum, q, load_i8(at16(&p.qs, 16 * k)));
            }
            let isum = [
                vgetq_lane_s32::<0>(isum),
                vgetq_lane_s32::<1>(isum),
                vgetq_lane_s32::<2>(isum),
                vgetq_lane_s32::<3>(isum),
            ];
            for (r, acc) in acc.iter_mut().enumerate() {
                for t in 0..GROUP {
                    let x = (d[r] * f16(p.d[t])) * isum[GROUP * r + t] as f32;
                    acc[GROUP * g + t] += match m[r] {
                        Some(m) => x + m * f16(p.s[t]),
                        None => x,
                    };
                }
            }
        }
    }
    acc
}
