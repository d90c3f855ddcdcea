//! The f32 vector operations of attention — q·k scores and the probability-weighted sum of
//! value rows — picked once per process like the quant kernels ([`super::dispatch`]). Every
//! faster version gives the portable one's results bit for bit.

use super::dispatch::selected;
use super::quants::float;
use std::sync::OnceLock;

struct VectorOps {
    dot: fn(&[f32], &[f32]) -> f32,
    axpy: fn(f32, &[f32], &mut [f32]),
}

/// `Σ x_i y_i` over the common length, summed as [`float::dot_f32`] sums.
pub fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    (ops().dot)(x, y)
}

/// `y_i += a·x_i` over the common length (product, then sum: no fused multiply-add).
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    (ops().axpy)(a, x, y)
}

/// The portable `axpy` (the compiler vectorises it for the baseline ISA).
pub fn portable_axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

fn ops() -> &'static VectorOps {
    static OPS: OnceLock<VectorOps> = OnceLock::new();
    OPS.get_or_init(|| match selected() {
        #[cfg(target_arch = "x86_64")]
        super::dispatch::Isa::Avx512Vnni if super::x86_avx512::available() => VectorOps {
            dot: super::x86_avx512::dot_f32,
            axpy: super::x86_avx512::axpy,
        },
        _ => VectorOps {
            dot: float::dot_f32,
            axpy: portable_axpy,
        },
    })
}
