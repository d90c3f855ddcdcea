//! aarch64 kernels: NEON, NEON + dotprod (`sdot`) and NEON + i8mm (`smmla`), chosen at run
//! time by [`super::dispatch`].

use crate::kernels::dispatch::Isa;
use crate::kernels::{GgmlType, VecDot, VecDot4};

/// The fastest `vec_dot` of a weight type at level `isa`, with its name, if there is one.
pub fn vec_dot(isa: Isa, ty: GgmlType) -> Option<(VecDot, &'static str)> {
    let _ = (isa, ty);
    None
}

/// The fastest four-row `vec_dot4` of a weight type at level `isa`, if there is one.
pub fn vec_dot4(isa: Isa, ty: GgmlType) -> Option<VecDot4> {
    let _ = (isa, ty);
    None
}
