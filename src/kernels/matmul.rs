//! `Y = X · Wᵀ` for a quantized weight matrix W and a batch of f32 activation rows X.
//!
//! Activations are converted once per call to the weight type's activation format (and packed,
//! for the tiled kernels), then the rows of W are split across the compute pool. Each task walks
//! its rows for every token of the batch, so a weight block is reused for all tokens while it is
//! in cache.

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
    if n_tok == 1 {
        quantize_activation(k.act_ty, x, &mut act);
    } else {
        act.par_chunks_exact_mut(act_bytes)
            .zip(x.par_chunks_exact(w.n_in))
            .for_each(|(ar, xr)| quantize_activation(k.act_ty, xr, ar));
    }

    let rows = rows_per_task(w.n_out, n_tok, row_bytes);
    let dot = k.vec_dot;
    let n_in = w.n_in;
    if n_tok == 1 {
        let gemv_rows = k.gemv.map_or(1, |g| g.rows);
        let rows = rows.next_multiple_of(gemv_rows);
        y.par_chunks_mut(rows).enumerate().for_each(|(c, out)| {
            let r0 = c * rows;
            let mut i = 0;
            if let Some(g) = k.gemv {
                i = out.len() - out.len() % g.rows;
                let wr = &w.data[r0 * row_bytes..][..i * row_bytes];
                (g.gemv)(n_in, wr, &act, &mut out[..i]);
            }
            for (j, o) in out.iter_mut().enumerate().skip(i) {
                let wr = &w.data[(r0 + j) * row_bytes..][..row_bytes];
                *o = dot(n_in, wr, &act);
            }
        });
        return;
    }
    // Batched: each task owns a range of weight rows, i.e. a set of columns of the token-major
    // output, and writes them in place.
    let out = SharedOut {
        ptr: y.as_mut_ptr(),
        len: y.len(),
    };
    let n_out = w.n_out;
    let w_row = |r: usize| &w.data[r * row_bytes..][..row_bytes];
    let act_row = |t: usize| &act[t * act_bytes..][..act_bytes];
    let n_tasks = n_out.div_ceil(rows);
    if let Some(tile) = k.tile {
        // Pack the activations once, padded to whole tiles of tokens.
        let group_bytes = (tile.group_bytes)(n_in);
        let n_groups = n_tok.div_ceil(tile.tokens) * (tile.tokens / tile.group);
        let mut packed = vec![0u8; n_groups * group_bytes];
        packed
            .par_chunks_mut(group_bytes)
            .enumerate()
            .for_each(|(g, dst)| {
                let t0 = (g * tile.group).min(n_tok);
                let t1 = (t0 + tile.group).min(n_tok);
                let rows: Vec<&[u8]> = (t0..t1).map(act_row).collect();
                (tile.pack)(n_in, &rows, dst);
            });
        let rows = rows.next_multiple_of(tile.rows);
        let n_tasks = n_out.div_ceil(rows);
        let tile_bytes = group_bytes * (tile.tokens / tile.group);
        (0..n_tasks).into_par_iter().for_each(|c| {
            let (r0, r1) = (c * rows, ((c + 1) * rows).min(n_out));
            let mut buf = vec![0f32; tile.rows * tile.tokens];
            for (j, packed) in packed.chunks_exact(tile_bytes).enumerate() {
                let t0 = j * tile.tokens;
                let n_t = tile.tokens.min(n_tok - t0);
                let mut r = r0;
                while r + tile.rows <= r1 {
                    let wr = &w.data[r * row_bytes..][..tile.rows * row_bytes];
                    (tile.tile)(n_in, wr, packed, &mut buf);
                    for (i, b) in buf.chunks_exact(tile.tokens).enumerate() {
                        for (t, &v) in b[..n_t].iter().enumerate() {
                            // SAFETY: row r + i is this task's.
                            unsafe { out.write((t0 + t) * n_out + r + i, v) };
                        }
                    }
                    r += tile.rows;
                }
                for r in r..r1 {
                    for t in t0..t0 + n_t {
                        // SAFETY: row r is this task's.
                        unsafe { out.write(t * n_out + r, dot(n_in, w_row(r), act_row(t))) };
                    }
                }
            }
        });
        return;
    }
    (0..n_tasks).into_par_iter().for_each(|c| {
        let (r0, r1) = (c * rows, ((c + 1) * rows).min(n_out));
        let mut t0 = 0;
        if let Some(dot4) = k.vec_dot4 {
            // Tiles of four tokens × this task's rows: the four activation rows stay in L1 while
            // the task's weight rows (a few tens of KiB) stream from L2, and each weight block is
            // unpacked once per four tokens.
            while t0 + 4 <= n_tok {
                let a4 = std::array::from_fn(|j| act_row(t0 + j));
                for r in r0..r1 {
                    let mut o = [0f32; 4];
                    dot4(n_in, w_row(r), a4, &mut o);
                    for (t, v) in o.into_iter().enumerate() {
                        // SAFETY: row r is this task's.
                        unsafe { out.write((t0 + t) * n_out + r, v) };
                    }
                }
                t0 += 4;
            }
        }
        for t in t0..n_tok {
            for r in r0..r1 {
                // SAFETY: row r is this task's.
                unsafe { out.write(t * n_out + r, dot(n_in, w_row(r), act_row(t))) };
            }
        }
    });
}

/// The token-major output of a batched matmul, shared by its tasks: each task writes only the
/// entries of its own weight rows, so no two tasks write the same entry.
#[derive(Clone, Copy)]
struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the tasks write disjoint entries (see `write`), and the buffer outlives them (it is
// borrowed mutably by `matmul`, which joins every task before returning).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Writes entry `i`.
    ///
    /// # Safety
    /// No other task may access entry `i` concurrently.
    #[inline]
    unsafe fn write(self, i: usize, v: f32) {
        assert!(i < self.len, "output index");
        // SAFETY: `i` is in bounds, and the caller guarantees exclusive access to it.
        unsafe { *self.ptr.add(i) = v };
    }
}

/// Dequantizes row `row` of a matrix of type `ty` (used for embedding look-ups).
pub fn dequantize_row(w: MatRef, row: usize, dst: &mut [f32]) {
    let k = kernels(w.ty).unwrap_or_else(|| panic!("no kernels for {}", w.ty));
    let row_bytes = w.ty.row_bytes(w.n_in).expect("row length is whole blocks");
    (k.dequantize)(&w.data[row * row_bytes..][..row_bytes], dst);
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::kernels::testing::{kernel_weight_rows, random_activations, same_f32, Rng};

    /// Every output equals `vec_dot` of its pair, with leftover rows (not a whole tile) and
    /// token counts that leave partial tiles.
    #[test]
    fn batched_outputs_equal_vec_dot() {
        let mut rng = Rng::new(0x3A7);
        use GgmlType as T;
        for ty in [
            T::Q4_0,
            T::Q5_0,
            T::Q8_0,
            T::Q4_1,
            T::Q5_1,
            T::Q4_K,
            T::Q6_K,
        ] {
            let k = kernels(ty).unwrap();
            let n_in = 512;
            // Two whole 16-row single-token groups and a remainder.
            let n_out = 37;
            let data: Vec<u8> = (0..8)
                .flat_map(|_| kernel_weight_rows(&mut rng, ty, n_in / ty.block_size()))
                .take(n_out)
                .flatten()
                .collect();
            let w = MatRef {
                ty,
                data: &data,
                n_in,
                n_out,
            };
            let row_bytes = ty.row_bytes(n_in).unwrap();
            for n_tok in [1, 5, 19] {
                let x = random_activations(&mut rng, n_tok * n_in);
                let mut y = vec![0f32; n_tok * n_out];
                matmul(w, &x, n_tok, &mut y);
                let act_bytes = k.act_ty.row_bytes(n_in).unwrap();
                for t in 0..n_tok {
                    let mut a = vec![0u8; act_bytes];
                    quantize_activation(k.act_ty, &x[t * n_in..][..n_in], &mut a);
                    for r in 0..n_out {
                        let want = (k.vec_dot)(n_in, &data[r * row_bytes..][..row_bytes], &a);
                        let got = y[t * n_out + r];
                        assert!(
                            same_f32(got, want),
                            "{ty} token {t} row {r}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
