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
/// For a batch, the task's weight rows are re-read once per four tokens, so they are also
/// kept within about 192 KiB (well inside a core's L2).
fn rows_per_task(n_out: usize, n_tok: usize, row_bytes: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let mut rows = n_out.div_ceil(threads * 8);
    if n_tok > 1 {
        rows = rows.min((192 << 10) / row_bytes.max(1)).max(8);
    } else {
        rows = rows.max(32);
    }
    rows.min(n_out.max(1))
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

    let rows = rows_per_task(w.n_out, n_tok, row_bytes);
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
            let n_rows = out.len() / n_tok;
            let w_row = |i: usize| &w.data[(r0 + i) * row_bytes..][..row_bytes];
            let act_row = |t: usize| &act[t * act_bytes..][..act_bytes];
            let mut t0 = 0;
            if let Some(dot4) = k.vec_dot4 {
                // Tiles of four tokens × this task's rows: the four activation rows stay in L1
                // while the task's weight rows (a few tens of KiB) stream from L2, and each
                // weight block is unpacked once per four tokens.
                while t0 + 4 <= n_tok {
                    let a4 = std::array::from_fn(|j| act_row(t0 + j));
                    for i in 0..n_rows {
                        let o: &mut [f32; 4] = (&mut out[i * n_tok + t0..][..4])
                            .try_into()
                            .expect("4 outputs");
                        dot4(n_in, w_row(i), a4, o);
                    }
                    t0 += 4;
                }
            }
            for t in t0..n_tok {
                for i in 0..n_rows {
                    out[i * n_tok + t] = dot(n_in, w_row(i), act_row(t));
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
