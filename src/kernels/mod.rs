//! Compute kernels: quant block formats, dequantization, activation quantization and dot products
//! per weight type, and the matmul that drives them.
//!
//! Each weight type has a scalar reference implementation; faster versions of the same function
//! must agree with it (see the tests next to each format).

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod block;
pub mod dispatch;
pub mod matmul;
pub mod quants;
pub mod simd;
#[cfg(test)]
mod testing;
pub mod threads;
pub mod vector;
#[cfg(target_arch = "x86_64")]
pub mod x86;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512;

pub use crate::gguf::GgmlType;

use block::{Bf16, F32Le, Half};
use quants::block32::{self, OffsetBlock32, ScaledBlock32};
use quants::float::{self, Element};
use quants::superblock::{self, SuperBlock};
use quants::{iq4_nl, iq4_xs, mxfp4, q2_k, q3_k, q4_0, q4_1, q4_k, q5_0, q5_1, q5_k, q6_k};
use quants::{q8_0, q8_1, q8_k};

/// A dot product of one weight row (`n` elements) with one activation row.
pub type VecDot = fn(n: usize, w: &[u8], a: &[u8]) -> f32;

/// A dot product of one weight row with four activation rows.
pub type VecDot4 = fn(n: usize, w: &[u8], a: [&[u8]; 4], out: &mut [f32; 4]);

/// A register-tiled kernel for batched matmuls: `rows` weight rows × `tokens` tokens per call,
/// over activations packed in groups of `group` tokens.
#[derive(Clone, Copy)]
pub struct Tile {
    pub rows: usize,
    /// A multiple of `group`.
    pub tokens: usize,
    pub group: usize,
    /// Bytes of one packed group of rows of `n` elements.
    pub group_bytes: fn(n: usize) -> usize,
    /// Packs up to `group` activation rows (of `act_ty`) into one zeroed group (missing rows stay
    /// zero).
    pub pack: fn(n: usize, rows: &[&[u8]], dst: &mut [u8]),
    /// `out[r * tokens + t] = vec_dot(n, w_r, a_t)` bit for bit, for the `rows` consecutive
    /// weight rows in `w` and the `tokens / group` consecutive packed groups in `packed`.
    pub tile: fn(n: usize, w: &[u8], packed: &[u8], out: &mut [f32]),
}

/// A kernel for one token against consecutive weight rows, in groups of `rows` (the decode
/// matmul): `out[r] = vec_dot(n, w_r, a)` bit for bit for every row of `w` (`out.len()` rows, a
/// multiple of `rows`), the independent f32 steps of a group's rows run side by side.
#[derive(Clone, Copy)]
pub struct Gemv {
    pub rows: usize,
    pub gemv: fn(n: usize, w: &[u8], a: &[u8], out: &mut [f32]),
}

/// The kernels of one weight type, as ggml pairs them.
#[derive(Clone, Copy)]
pub struct TypeKernels {
    pub ty: GgmlType,
    /// The format an activation row is converted to before `vec_dot` (ggml's `vec_dot_type`):
    /// F32, F16, BF16, Q8_0, Q8_1 or Q8_K.
    pub act_ty: GgmlType,
    /// Dequantizes a whole number of blocks: `dst.len()` elements from `src`.
    pub dequantize: fn(src: &[u8], dst: &mut [f32]),
    /// Dot product of one weight row (`n` elements of `ty`) with one activation row (`n` elements
    /// of `act_ty`).
    pub vec_dot: fn(n: usize, w: &[u8], a: &[u8]) -> f32,
    /// Optional: `vec_dot` of one weight row with four activation rows at once (each weight block
    /// unpacked once), each result equal to `vec_dot`'s; used by the batched matmul.
    pub vec_dot4: Option<VecDot4>,
    /// Optional: the tiled kernel for batches, used instead of `vec_dot4` when present.
    pub tile: Option<Tile>,
    /// Optional: the several-row kernel for single tokens, used instead of `vec_dot` when present.
    pub gemv: Option<Gemv>,
    /// Which implementation `vec_dot` is: "portable" (the `wide` kernels) or an ISA name.
    pub imp: &'static str,
}

/// A float type dotted with activations of its own type.
const fn float_entry<E: Element>(ty: GgmlType) -> TypeKernels {
    TypeKernels {
        ty,
        act_ty: ty,
        dequantize: float::dequantize::<E>,
        vec_dot: float::vec_dot::<E>,
        vec_dot4: None,
        tile: None,
        gemv: None,
        imp: "portable",
    }
}

const fn scaled32_entry<B: ScaledBlock32>(ty: GgmlType) -> TypeKernels {
    TypeKernels {
        ty,
        act_ty: GgmlType::Q8_0,
        dequantize: block32::dequantize::<B>,
        vec_dot: block32::vec_dot::<B>,
        vec_dot4: None,
        tile: None,
        gemv: None,
        imp: "portable",
    }
}

const fn offset32_entry<B: OffsetBlock32>(ty: GgmlType) -> TypeKernels {
    TypeKernels {
        ty,
        act_ty: GgmlType::Q8_1,
        dequantize: block32::dequantize_offset::<B>,
        vec_dot: block32::vec_dot_offset::<B>,
        vec_dot4: None,
        tile: None,
        gemv: None,
        imp: "portable",
    }
}

const fn superblock_entry<B: SuperBlock>(ty: GgmlType) -> TypeKernels {
    TypeKernels {
        ty,
        act_ty: GgmlType::Q8_K,
        dequantize: superblock::dequantize::<B>,
        vec_dot: superblock::vec_dot::<B>,
        vec_dot4: None,
        tile: None,
        gemv: None,
        imp: "portable",
    }
}

/// Every weight type with its portable kernels. The family fixes the activation format, as in ggml-cpu's
/// `type_traits_cpu` (`vec_dot_type`).
static PORTABLE: [TypeKernels; 16] = {
    use GgmlType as T;
    [
        float_entry::<F32Le>(T::F32),
        float_entry::<Half>(T::F16),
        float_entry::<Bf16>(T::BF16),
        scaled32_entry::<q4_0::BlockQ4_0>(T::Q4_0),
        scaled32_entry::<q5_0::BlockQ5_0>(T::Q5_0),
        scaled32_entry::<q8_0::BlockQ8_0>(T::Q8_0),
        scaled32_entry::<iq4_nl::BlockIQ4NL>(T::IQ4_NL),
        scaled32_entry::<mxfp4::BlockMXFP4>(T::MXFP4),
        offset32_entry::<q4_1::BlockQ4_1>(T::Q4_1),
        offset32_entry::<q5_1::BlockQ5_1>(T::Q5_1),
        superblock_entry::<q2_k::BlockQ2K>(T::Q2_K),
        superblock_entry::<q3_k::BlockQ3K>(T::Q3_K),
        superblock_entry::<q4_k::BlockQ4K>(T::Q4_K),
        superblock_entry::<q5_k::BlockQ5K>(T::Q5_K),
        superblock_entry::<q6_k::BlockQ6K>(T::Q6_K),
        superblock_entry::<iq4_xs::BlockIQ4XS>(T::IQ4_XS),
    ]
};

/// The kernel table of a weight type, or `None` if the type cannot be used as a weight: the
/// fastest implementations this CPU supports, chosen once per process (see [`dispatch`]).
pub fn kernels(ty: GgmlType) -> Option<&'static TypeKernels> {
    dispatch::table().iter().find(|k| k.ty == ty)
}

/// The portable (`wide`) kernels of a weight type, whatever the CPU.
pub fn portable_kernels(ty: GgmlType) -> Option<&'static TypeKernels> {
    PORTABLE.iter().find(|k| k.ty == ty)
}

/// The scalar reference `vec_dot` of a weight type: the twin every faster kernel must match.
pub fn scalar_vec_dot(ty: GgmlType) -> Option<VecDot> {
    use GgmlType as T;
    Some(match ty {
        T::F32 => float::scalar::vec_dot::<F32Le>,
        T::F16 => float::scalar::vec_dot::<Half>,
        T::BF16 => float::scalar::vec_dot::<Bf16>,
        T::Q4_0 => block32::scalar::vec_dot::<q4_0::BlockQ4_0>,
        T::Q5_0 => block32::scalar::vec_dot::<q5_0::BlockQ5_0>,
        T::Q8_0 => block32::scalar::vec_dot::<q8_0::BlockQ8_0>,
        T::IQ4_NL => block32::scalar::vec_dot::<iq4_nl::BlockIQ4NL>,
        T::MXFP4 => block32::scalar::vec_dot::<mxfp4::BlockMXFP4>,
        T::Q4_1 => block32::scalar::vec_dot_offset::<q4_1::BlockQ4_1>,
        T::Q5_1 => block32::scalar::vec_dot_offset::<q5_1::BlockQ5_1>,
        T::Q2_K => superblock::scalar::vec_dot::<q2_k::BlockQ2K>,
        T::Q3_K => superblock::scalar::vec_dot::<q3_k::BlockQ3K>,
        T::Q4_K => superblock::scalar::vec_dot::<q4_k::BlockQ4K>,
        T::Q5_K => superblock::scalar::vec_dot::<q5_k::BlockQ5K>,
        T::Q6_K => superblock::scalar::vec_dot::<q6_k::BlockQ6K>,
        T::IQ4_XS => superblock::scalar::vec_dot::<iq4_xs::BlockIQ4XS>,
        T::Q8_1 | T::Q8_K => return None,
    })
}

/// Converts `x` (a whole number of `act_ty` blocks) into the activation format `act_ty`.
///
/// Panics if `act_ty` is not one of the activation formats of [`TypeKernels::act_ty`].
pub fn quantize_activation(act_ty: GgmlType, x: &[f32], dst: &mut [u8]) {
    debug_assert_eq!(
        act_ty.row_bytes(x.len()),
        Some(dst.len()),
        "{act_ty} row size"
    );
    match act_ty {
        GgmlType::F32 => float::quantize::<F32Le>(x, dst),
        GgmlType::F16 => float::quantize::<Half>(x, dst),
        GgmlType::BF16 => float::quantize::<Bf16>(x, dst),
        GgmlType::Q8_0 => q8_0::quantize(x, dst),
        GgmlType::Q8_1 => q8_1::quantize(x, dst),
        GgmlType::Q8_K => q8_k::quantize(x, dst),
        other => panic!("{other} is not an activation format"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{dequantize_activation, random_activations, Rng};

    #[test]
    fn table_covers_every_weight_type() {
        use GgmlType as T;
        for ty in T::ALL {
            let want_act = match ty {
                T::Q8_1 | T::Q8_K => None,
                T::F32 | T::F16 | T::BF16 => Some(ty),
                T::Q4_0 | T::Q5_0 | T::Q8_0 | T::IQ4_NL | T::MXFP4 => Some(T::Q8_0),
                T::Q4_1 | T::Q5_1 => Some(T::Q8_1),
                T::Q2_K | T::Q3_K | T::Q4_K | T::Q5_K | T::Q6_K | T::IQ4_XS => Some(T::Q8_K),
            };
            let k = kernels(ty);
            assert_eq!(k.map(|k| k.act_ty), want_act, "{ty}");
            assert!(k.is_none_or(|k| k.ty == ty), "{ty}");
        }
    }

    #[test]
    fn block_structs_match_ggml_sizes() {
        use GgmlType as T;
        let sizes = [
            (T::F32, size_of::<F32Le>()),
            (T::F16, size_of::<Half>()),
            (T::BF16, size_of::<Bf16>()),
            (T::Q4_0, size_of::<q4_0::BlockQ4_0>()),
            (T::Q4_1, size_of::<q4_1::BlockQ4_1>()),
            (T::Q5_0, size_of::<q5_0::BlockQ5_0>()),
            (T::Q5_1, size_of::<q5_1::BlockQ5_1>()),
            (T::Q8_0, size_of::<q8_0::BlockQ8_0>()),
            (T::Q8_1, size_of::<q8_1::BlockQ8_1>()),
            (T::Q2_K, size_of::<q2_k::BlockQ2K>()),
            (T::Q3_K, size_of::<q3_k::BlockQ3K>()),
            (T::Q4_K, size_of::<q4_k::BlockQ4K>()),
            (T::Q5_K, size_of::<q5_k::BlockQ5K>()),
            (T::Q6_K, size_of::<q6_k::BlockQ6K>()),
            (T::Q8_K, size_of::<q8_k::BlockQ8K>()),
            (T::IQ4_NL, size_of::<iq4_nl::BlockIQ4NL>()),
            (T::IQ4_XS, size_of::<iq4_xs::BlockIQ4XS>()),
            (T::MXFP4, size_of::<mxfp4::BlockMXFP4>()),
        ];
        assert_eq!(sizes.len(), T::ALL.len());
        for (ty, size) in sizes {
            assert_eq!(size, ty.block_bytes(), "{ty}");
        }
    }

    #[test]
    fn activations_round_trip() {
        let mut rng = Rng::new(1);
        let x = random_activations(&mut rng, 512);
        for (act_ty, rel_tol) in [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 1e-3),
            (GgmlType::BF16, 8e-3),
            (GgmlType::Q8_0, 1e-2),
            (GgmlType::Q8_1, 1e-2),
            (GgmlType::Q8_K, 1e-2),
        ] {
            let mut bytes = vec![0u8; act_ty.row_bytes(x.len()).unwrap()];
            quantize_activation(act_ty, &x, &mut bytes);
            let mut back = vec![0f32; x.len()];
            dequantize_activation(act_ty, &bytes, &mut back);
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in x.iter().zip(&back) {
                // Block-quantized formats err relative to their block's largest value, so bound by
                // the row's.
                let tol = if act_ty.block_size() == 1 {
                    rel_tol * a.abs()
                } else {
                    rel_tol * amax
                };
                assert!((a - b).abs() <= tol, "{act_ty}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn simd_activation_quantizers_match_scalar() {
        let mut rng = Rng::new(2);
        let x = random_activations(&mut rng, 1024);
        type Quantize = fn(&[f32], &mut [u8]);
        let twins: [(GgmlType, Quantize, Quantize); 2] = [
            (GgmlType::Q8_0, q8_0::quantize, q8_0::scalar::quantize),
            (GgmlType::Q8_K, q8_k::quantize, q8_k::scalar::quantize),
        ];
        for (ty, fast, reference) in twins {
            let mut a = vec![0u8; ty.row_bytes(x.len()).unwrap()];
            let mut b = a.clone();
            fast(&x, &mut a);
            reference(&x, &mut b);
            assert_eq!(a, b, "{ty}");
        }
    }
}
