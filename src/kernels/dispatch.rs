//! Run-time kernel selection: the CPU's features are detected once per process and the kernel
//! table is built from the fastest implementation of each weight type this CPU can run. One
//! binary therefore runs on every machine of its architecture (a Raspberry Pi 4 has no
//! dotprod, a Pi 5 has; an x86 server may lack AVX2), never relying on compile-time
//! `target-cpu`.
//!
//! `GGUFD_KERNELS=portable` in the environment forces the portable (`wide`) kernels, for
//! comparisons and bisection (`GGUFD_KERNELS=avx2` caps x86 at the AVX2 kernels).

use super::{Gemv, GgmlType, Tile, TypeKernels, VecDot, VecDot4, PORTABLE};
use std::sync::OnceLock;

/// An instruction-set level the kernels distinguish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The `wide` kernels only (SSE2 on x86-64, NEON on aarch64 through `wide`).
    Portable,
    /// x86-64 AVX2 + FMA (+F16C).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL with VNNI (`vpdpbusd`), on top of AVX2 (Zen 4, Ice Lake and later).
    Avx512Vnni,
    /// aarch64 NEON without the dot-product extension (Cortex-A72, Raspberry Pi 4).
    Neon,
    /// aarch64 NEON with `sdot` (Cortex-A76, Raspberry Pi 5, and later).
    NeonDotprod,
    /// aarch64 NEON with `sdot` and the int8 matrix multiply `smmla` (Armv8.6 cores).
    NeonI8mm,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon+dotprod",
            Isa::NeonI8mm => "neon+dotprod+i8mm",
        }
    }
}

/// The best level this CPU supports (ignoring `GGUFD_KERNELS`).
pub fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if super::x86::avx2_available() {
            let avx512 = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni");
            return if avx512 { Isa::Avx512Vnni } else { Isa::Avx2 };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected;
        if is_aarch64_feature_detected!("dotprod") {
            if is_aarch64_feature_detected!("i8mm") {
                return Isa::NeonI8mm;
            }
            return Isa::NeonDotprod;
        }
        return Isa::Neon;
    }
    #[allow(unreachable_code)]
    Isa::Portable
}

/// The level the kernel table was built for: [`detect`], unless `GGUFD_KERNELS=portable`.
pub fn selected() -> Isa {
    static SELECTED: OnceLock<Isa> = OnceLock::new();
    *SELECTED.get_or_init(|| match std::env::var("GGUFD_KERNELS").as_deref() {
        Ok("portable") => Isa::Portable,
        Ok("avx2") if detect() == Isa::Avx512Vnni => Isa::Avx2,
        _ => detect(),
    })
}

/// The kernel of `ty` for `isa`, with its implementation's name, if that level has one.
fn special_vec_dot(isa: Isa, ty: GgmlType) -> Option<(VecDot, &'static str)> {
    match isa {
        Isa::Portable => None,
        #[cfg(target_arch = "x86_64")]
        _ => super::x86::vec_dot(isa, ty),
        #[cfg(target_arch = "aarch64")]
        _ => super::aarch64::vec_dot(isa, ty),
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        _ => None,
    }
}

/// The four-row kernel of `ty` for `isa`, if any.
fn special_vec_dot4(isa: Isa, ty: GgmlType) -> Option<VecDot4> {
    match isa {
        Isa::Portable => None,
        #[cfg(target_arch = "x86_64")]
        _ => super::x86::vec_dot4(isa, ty),
        #[cfg(target_arch = "aarch64")]
        _ => super::aarch64::vec_dot4(isa, ty),
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        _ => None,
    }
}

/// The tiled batch kernel of `ty` for `isa`, if any.
fn special_tile(isa: Isa, ty: GgmlType) -> Option<Tile> {
    match isa {
        Isa::Portable => None,
        #[cfg(target_arch = "x86_64")]
        _ => super::x86::tile(isa, ty),
        #[cfg(target_arch = "aarch64")]
        _ => super::aarch64::tile(isa, ty),
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        _ => None,
    }
}

/// The several-row single-token kernel of `ty` for `isa`, if any (x86 only: elsewhere the 1-row
/// kernels serve decoding).
fn special_gemv(isa: Isa, ty: GgmlType) -> Option<Gemv> {
    match isa {
        Isa::Portable => None,
        #[cfg(target_arch = "x86_64")]
        _ => super::x86::gemv(isa, ty),
        #[cfg(not(target_arch = "x86_64"))]
        _ => {
            let _ = ty;
            None
        }
    }
}

/// The process-wide kernel table.
pub(super) fn table() -> &'static [TypeKernels] {
    static TABLE: OnceLock<Vec<TypeKernels>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let isa = selected();
        PORTABLE
            .iter()
            .map(|k| match special_vec_dot(isa, k.ty) {
                Some((vec_dot, imp)) => TypeKernels {
                    vec_dot,
                    vec_dot4: special_vec_dot4(isa, k.ty),
                    tile: special_tile(isa, k.ty),
                    gemv: special_gemv(isa, k.ty),
                    imp,
                    ..*k
                },
                None => *k,
            })
            .collect()
    })
}

/// One line naming the selected kernels, for `inspect` and `bench`: the CPU's level, then
/// which implementation each weight type runs, grouped (e.g. `avx2: Q4_0 Q5_0; portable: F32`).
pub fn summary() -> String {
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for k in table() {
        match groups.iter_mut().find(|(imp, _)| *imp == k.imp) {
            Some((_, types)) => types.push(k.ty.to_string()),
            None => groups.push((k.imp, vec![k.ty.to_string()])),
        }
    }
    let groups: Vec<String> = groups
        .into_iter()
        .map(|(imp, types)| format!("{imp}: {}", types.join(" ")))
        .collect();
    format!("kernels: {} ({})", selected().name(), groups.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_type_once() {
        let t = table();
        assert_eq!(t.len(), PORTABLE.len());
        for (a, b) in t.iter().zip(PORTABLE.iter()) {
            assert_eq!(a.ty, b.ty);
            assert_eq!(a.act_ty, b.act_ty);
        }
    }

    /// Under qemu (`../shared/tools/arm-test.sh` exports ARM_QEMU_CPU) the dispatcher must pick
    /// the i8mm path on `max`, dotprod on `cortex-a76` and plain NEON on `cortex-a72`.
    #[test]
    fn dispatch_matches_the_emulated_cpu() {
        let want = match std::env::var("ARM_QEMU_CPU").as_deref() {
            Ok("max") => Isa::NeonI8mm,
            Ok("cortex-a76") => Isa::NeonDotprod,
            Ok("cortex-a72") | Ok("cortex-a53") => Isa::Neon,
            _ => {
                eprintln!(
                    "detected {:?}; not under arm-test.sh, nothing to assert",
                    detect()
                );
                return;
            }
        };
        assert_eq!(detect(), want);
    }
}
