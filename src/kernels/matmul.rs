//! `Y = X · Wᵀ` for a quantized weight matrix W and a batch of f32 activation rows X.
//!
//! Activations are converted once per call to the weight type's activation format, then the rows
//! of W are split across the compute pool. Each task walks its rows for every token of the batch,
//! so a weight block is reused for all tokens while it is in cache.

use super::{kernels, quantize_activation, GgmlType};
use rayon::prelude::*;

/// A weight matrix: `n_out` rows of `n_in` elements of type `ty`, stored contiguously.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub ty: GgmlType,
    pub data: &'a [u8],
    pub n_in: usize,
    pub n_out: usize,
}

/// Rows per parallel task: enough work to amortise scheduling, small enough to balance.
fn rows_per_task(n_out: usize, n_tok: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_balance = n_out.div_ceil(threads * 8);
    let min_rows = if n_tok > 1 { 8 } else { 32 };
    by_balance.max(min_rows).min(n_out.max(1))
}

/// `y[t * n_out + r] = W[r] · x[t * n_in ..][..n_in]` for every token `t < n_tok` and row `r`.
///
/// Panics if the weight type has no kernels or the buffer sizes do not match: the model loader
/// checks both before a matmul is ever run.
pub fn matmul(w: MatRef, x: &[f32], n_tok: usize, y: &mut [f32]) {
    let k = kernels(w.ty).unwrap_or_else(|| panic!("no kernels for {}", w.ty));
    let row_bytes = w.ty.row_bytes(w.n_in).expect("row length is whole blocks");
    assert_eq!(w.data.len(), row_bytes * w.n_out, "weight size");
    assert_eq!(x.len(), n_tok * w.n_in, "activation size");
    assert_eq!(y.len(), n_tok * w.n_out, "output size");

    let act_bytes = k
        .act_ty
        .row_bytes(w.n_in)
        .expect("activation row is whole blocks");
    let mut act = vec![0u8; act_bytes * n_tok];
    for (xr, ar) in x.chunks_exact(w.n_in).zip(act.chunks_exact_mut(act_bytes)) {
        quantize_activation(k.act_ty, xr, ar);
    }

    let rows = rows_per_task(w.n_out, n_tok);
    let dot = k.vec_dot;
    let n_in = w.n_in;
    if n_tok == 1 {
        y.par_chunks_mut(rows).enumerate().for_each(|(c, out)| {
            let r0 = c * rows;
            for (i, o) in out.iter_mut().enumerate() {
                let wr = &w.data[(r0 + i) * row_bytes..][..row_bytes];
                *o = dot(n_in, wr, &act);
            }
        });
        return;
    }
    // Batched: compute the transpose (row-major over weight rows) so each task owns a contiguous
    // slice, then scatter into token-major order.
    let mut yt = vec![0f32; n_tok * w.n_out];
    yt.par_chunks_mut(rows * n_tok)
        .enumerate()
        .for_each(|(c, out)| {
            let r0 = c * rows;
            for (i, o_row) in out.chunks_exact_mut(n_tok).enumerate() {
                let wr = &w.data[(r0 + i) * row_bytes..][..row_bytes];
                for (t, o) in o_row.iter_mut().enumerate() {
                    *o = dot(n_in, wr, &act[t * act_bytes..][..act_bytes]);
                }
            }
        });
    for (r, col) in yt.chunks_exact(n_tok).enumerate() {
        for (t, &v) in col.iter().enumerate() {
            y[t * w.n_out + r] = v;
        }
    }
}

/// Dequantizes row `row` of a matrix of type `ty` (used for embedding look-ups).
pub fn dequantize_row(w: MatRef, row: usize, dst: &mut [f32]) {
    let k = kernels(w.ty).unwrap_or_else(|| panic!("no kernels for {}", w.ty));
    let row_bytes = w.ty.row_bytes(w.n_in).expect("row length is whole blocks");
    (k.dequantize)(&w.data[row * row_bytes..][..row_bytes], dst);
}
