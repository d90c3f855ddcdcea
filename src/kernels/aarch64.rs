//! aarch64 kernels: NEON (Cortex-A72, Raspberry Pi 4) and NEON + dotprod (Cortex-A76,
//! Raspberry Pi 5), chosen at run time by [`super::dispatch`].
//!
//! Every weight format unpacks to signed i8 quants (Q4_0's `q - 8`, Q6_K's `q - 32`, the table
//! values of IQ4_NL/IQ4_XS/MXFP4), so one signed 16-byte dot serves them all: plain NEON
//! widens with `smull` and accumulates pairs with `sadalp`, dotprod uses `sdot`; both give exact
//! i32 lanes. The f32 steps are the scalar twin's, in the same order (blocks summed from -0.0
//! like `Iterator::sum`), so every kernel equals its twin bit for bit.
//!
//! i8mm: `smmla` multiplies two weight rows by two activation rows. `VecDot`/`VecDot4` hand a
//! kernel one weight row, so half of its products would be thrown away and it would do no
//! more useful work than `sdot`: `Isa::NeonI8mm` runs the dotprod kernels there, and adds
//! [`Tile`]s (two weight rows × four tokens, [`i8mm`]) for the 32-element block formats.

mod i8mm;
mod levels;

use crate::kernels::block::{blocks, Block};
use crate::kernels::dispatch::Isa;
use crate::kernels::{GgmlType, Tile, VecDot, VecDot4};
use std::arch::is_aarch64_feature_detected;

/// The fastest `vec_dot` of a weight type at level `isa`, with its name, if there is one.
/// Returns `None` unless the CPU has the level's features: the wrappers handed out here are
/// only sound on such a CPU.
pub fn vec_dot(isa: Isa, ty: GgmlType) -> Option<(VecDot, &'static str)> {
    kernels(isa, ty).map(|(one, _, name)| (one, name))
}

/// The fastest four-row `vec_dot4` of a weight type at level `isa`, if there is one (same
/// contract as [`vec_dot`]).
pub fn vec_dot4(isa: Isa, ty: GgmlType) -> Option<VecDot4> {
    kernels(isa, ty).map(|(_, four, _)| four)
}

/// The tiled batch kernel of a weight type at level `isa`, if there is one (same contract as
/// [`vec_dot`]).
pub fn tile(isa: Isa, ty: GgmlType) -> Option<Tile> {
    (isa == Isa::NeonI8mm).then(|| i8mm::tile(ty)).flatten()
}

fn kernels(isa: Isa, ty: GgmlType) -> Option<(VecDot, VecDot4, &'static str)> {
    macro_rules! table {
        ($level:ident, $name:literal) => {{
            use levels::$level as l;
            let (one, four) = match ty {
                GgmlType::Q4_0 => entries::<l::Q4_0>(),
                GgmlType::Q4_1 => entries::<l::Q4_1>(),
                GgmlType::Q5_0 => entries::<l::Q5_0>(),
                GgmlType::Q5_1 => entries::<l::Q5_1>(),
                GgmlType::Q8_0 => entries::<l::Q8_0>(),
                GgmlType::IQ4_NL => entries::<l::Iq4Nl>(),
                GgmlType::MXFP4 => entries::<l::Mxfp4>(),
                GgmlType::Q4_K => entries::<l::Q4K>(),
                GgmlType::Q5_K => entries::<l::Q5K>(),
                GgmlType::Q6_K => entries::<l::Q6K>(),
                GgmlType::IQ4_XS => entries::<l::Iq4Xs>(),
                _ => return None,
            };
            Some((one, four, $name))
        }};
    }
    match isa {
        Isa::Neon if is_aarch64_feature_detected!("neon") => table!(neon, "neon"),
        Isa::NeonDotprod | Isa::NeonI8mm
            if is_aarch64_feature_detected!("neon") && is_aarch64_feature_detected!("dotprod") =>
        {
            table!(dotprod, "neon+dotprod")
        }
        _ => None,
    }
}

/// One weight type's kernel at one level: `N` activation rows against one weight row, each
/// weight block unpacked once.
trait Kernel {
    type W: Block;
    type A: Block;
    /// # Safety
    /// The CPU must have the level's features.
    unsafe fn rows<const N: usize>(w: &[Self::W], a: [&[Self::A]; N]) -> [f32; N];
}

fn entries<K: Kernel>() -> (VecDot, VecDot4) {
    (one::<K>, four::<K>)
}

/// Safe entry points: only reachable through [`kernels`], which checked the CPU.
fn one<K: Kernel>(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (w, a) = (blocks::<K::W>(w), blocks::<K::A>(a));
    assert_eq!(a.len(), w.len(), "activation row");
    let _ = n;
    // SAFETY: `kernels` hands this out only after detecting `K`'s features on this CPU.
    let [r] = unsafe { K::rows(w, [a]) };
    r
}

fn four<K: Kernel>(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]) {
    let w = blocks::<K::W>(w);
    let a = a.map(blocks::<K::A>);
    assert!(a.iter().all(|a| a.len() == w.len()), "activation rows");
    let _ = n;
    // SAFETY: as in `one`.
    *out = unsafe { K::rows(w, a) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::portable_kernels;
    use crate::kernels::quants::superblock::QK_K;
    use crate::kernels::simd::scalar::dot_i8;
    use crate::kernels::testing::{
        assert_four_rows_equal_one, kernel_activation_rows, kernel_weight_rows, same_f32, Rng,
    };

    const TYPES: [GgmlType; 11] = {
        use GgmlType as T;
        [
            T::Q4_0,
            T::Q4_1,
            T::Q5_0,
            T::Q5_1,
            T::Q8_0,
            T::IQ4_NL,
            T::MXFP4,
            T::Q4_K,
            T::Q5_K,
            T::Q6_K,
            T::IQ4_XS,
        ]
    };

    /// The levels this CPU runs (plain NEON always; dotprod when detected).
    fn levels() -> Vec<Isa> {
        let mut l = vec![Isa::Neon];
        if is_aarch64_feature_detected!("dotprod") {
            l.push(Isa::NeonDotprod);
        }
        eprintln!("testing {l:?}");
        l
    }

    /// Every kernel at every level equals its scalar twin bit for bit, on random, wild
    /// (NaN/inf/subnormal scales) and extreme blocks.
    #[test]
    fn neon_vec_dots_match_scalar() {
        for isa in levels() {
            let mut rng = Rng::new(0xA5);
            for ty in TYPES {
                let (fast, name) = vec_dot(isa, ty).expect("a kernel");
                let act_ty = portable_kernels(ty).unwrap().act_ty;
                let scalar = crate::kernels::scalar_vec_dot(ty).unwrap();
                let n = 4 * ty.block_size().max(QK_K);
                for w in kernel_weight_rows(&mut rng, ty, n / ty.block_size()) {
                    for a in kernel_activation_rows(&mut rng, act_ty, n) {
                        let (f, r) = (fast(n, &w, &a), scalar(n, &w, &a));
                        assert!(same_f32(f, r), "{ty} {name}: {f} vs scalar {r}");
                    }
                }
            }
        }
    }

    /// The four-row kernels give exactly the one-row kernel's result for each row.
    #[test]
    fn neon_four_row_kernels_equal_one_row() {
        for isa in levels() {
            let mut rng = Rng::new(0x44);
            for ty in TYPES {
                let (one, four) = (vec_dot(isa, ty).unwrap().0, vec_dot4(isa, ty).unwrap());
                assert_four_rows_equal_one(&mut rng, ty, one, four, isa.name());
            }
        }
    }

    /// The 16-byte dot primitives are exact, -128·-128 included.
    #[test]
    fn neon_dot_primitives_are_exact() {
        let mut rng = Rng::new(0x16);
        let mut cases: Vec<([i8; 16], [i8; 16])> = vec![
            ([i8::MIN; 16], [i8::MIN; 16]),
            ([i8::MIN; 16], [i8::MAX; 16]),
            ([i8::MAX; 16], [i8::MAX; 16]),
        ];
        for _ in 0..64 {
            cases.push((
                std::array::from_fn(|_| rng.next_u64() as i8),
                std::array::from_fn(|_| rng.next_u64() as i8),
            ));
        }
        for (a, b) in cases {
            let want = dot_i8(&a, &b);
            // SAFETY: NEON is always there; dotprod is checked.
            assert_eq!(unsafe { levels::neon::dot16(&a, &b) }, want);
            if is_aarch64_feature_detected!("dotprod") {
                assert_eq!(unsafe { levels::dotprod::dot16(&a, &b) }, want);
            }
        }
    }

    /// Each i8mm tile equals `vec_dot` bit for bit for every (weight row, token), partial
    /// groups (zero-padded tokens) included.
    #[test]
    fn i8mm_tiles_equal_vec_dot() {
        if !is_aarch64_feature_detected!("i8mm") {
            eprintln!("no i8mm on this CPU: nothing to compare");
            return;
        }
        let mut rng = Rng::new(0x88);
        for ty in TYPES {
            let Some(tile) = tile(Isa::NeonI8mm, ty) else {
                continue;
            };
            let one = vec_dot(Isa::NeonI8mm, ty).unwrap().0;
            let act_ty = portable_kernels(ty).unwrap().act_ty;
            let n = 8 * ty.block_size();
            let row_bytes = ty.row_bytes(n).unwrap();
            let weights = kernel_weight_rows(&mut rng, ty, 2 * n / ty.block_size());
            for w in &weights {
                let acts = kernel_activation_rows(&mut rng, act_ty, n);
                for n_tok in [4, 3, 1] {
                    let a: Vec<&[u8]> = acts[..n_tok].iter().map(|a| &a[..]).collect();
                    let gb = (tile.group_bytes)(n);
                    let mut packed = vec![0u8; 2 * gb];
                    for (g, dst) in packed.chunks_exact_mut(gb).enumerate() {
                        let rows = &a[(2 * g).min(n_tok)..(2 * g + 2).min(n_tok)];
                        (tile.pack)(n, rows, dst);
                    }
                    let mut out = [0f32; 8];
                    (tile.tile)(n, w, &packed, &mut out);
                    for r in 0..2 {
                        let w_r = &w[r * row_bytes..][..row_bytes];
                        for (t, a) in a.iter().enumerate() {
                            let want = one(n, w_r, a);
                            assert!(same_f32(out[4 * r + t], want), "{ty} row {r} token {t}");
                        }
                    }
                }
            }
        }
    }

    /// NeonI8mm runs the dotprod kernels; no level exists without its features.
    #[test]
    fn levels_are_named_and_gated() {
        let dotprod = is_aarch64_feature_detected!("dotprod");
        for ty in TYPES {
            assert_eq!(vec_dot(Isa::Neon, ty).map(|k| k.1), Some("neon"));
            for isa in [Isa::NeonDotprod, Isa::NeonI8mm] {
                let want = dotprod.then_some("neon+dotprod");
                assert_eq!(vec_dot(isa, ty).map(|k| k.1), want, "{ty} {isa:?}");
                assert_eq!(vec_dot4(isa, ty).is_some(), dotprod);
            }
            assert!(vec_dot(Isa::Portable, ty).is_none());
            let i8mm = is_aarch64_feature_detected!("i8mm") && ty.block_size() == 32;
            assert_eq!(tile(Isa::NeonI8mm, ty).is_some(), i8mm, "{ty}");
            assert!(tile(Isa::NeonDotprod, ty).is_none());
        }
    }
}
