//! Typed, shape-checked weight handles over the mapped GGUF file.

use super::{ModelError, Result};
use crate::gguf::{GgmlType, GgufFile, TensorData};
use crate::kernels::{self, matmul::MatRef};

/// A 2-D weight matrix `{n_in, n_out}` (n_out rows of n_in values), or a stack of them
/// `{n_in, n_out, n_mat}` (e.g. experts).
#[derive(Clone, Debug)]
pub struct Matrix {
    pub data: TensorData,
    pub n_in: usize,
    pub n_out: usize,
}

impl Matrix {
    pub fn ty(&self) -> GgmlType {
        self.data.ty
    }

    pub fn as_ref(&self) -> MatRef<'_> {
        MatRef {
            ty: self.data.ty,
            data: self.data.bytes(),
            n_in: self.n_in,
            n_out: self.n_out,
        }
    }

    /// `y[t] = W · x[t]` for `n_tok` rows of x.
    pub fn matmul(&self, x: &[f32], n_tok: usize) -> Vec<f32> {
        let mut y = vec![0f32; n_tok * self.n_out];
        kernels::matmul::matmul(self.as_ref(), x, n_tok, &mut y);
        y
    }

    /// Dequantizes row `row` (an embedding look-up).
    pub fn row(&self, row: usize, dst: &mut [f32]) {
        kernels::matmul::dequantize_row(self.as_ref(), row, dst);
    }

    pub fn n_params(&self) -> usize {
        self.data.shape.iter().product()
    }
}

/// A stack of `n_mat` matrices `{n_in, n_out, n_mat}` (the experts of a MoE layer). Matrix `i` is
/// rows `[i·n_out, (i+1)·n_out)` of the mapped tensor, so using one touches only its own bytes.
#[derive(Clone, Debug)]
pub struct MatrixStack {
    pub data: TensorData,
    pub n_in: usize,
    pub n_out: usize,
    pub n_mat: usize,
}

impl MatrixStack {
    /// Bytes of one matrix of the stack.
    pub fn matrix_bytes(&self) -> usize {
        self.data.bytes().len() / self.n_mat
    }

    /// Matrix `i` (`i < n_mat`), as a view of its own byte range.
    pub fn get(&self, i: usize) -> MatRef<'_> {
        let size = self.matrix_bytes();
        MatRef {
            ty: self.data.ty,
            data: &self.data.bytes()[i * size..(i + 1) * size],
            n_in: self.n_in,
            n_out: self.n_out,
        }
    }

    /// `n_out` output rows `[row0, row0 + n_out)` of matrix `i` (one half of a fused gate/up).
    pub fn rows(&self, i: usize, row0: usize, n_out: usize) -> MatRef<'_> {
        let m = self.get(i);
        let row_bytes = m.data.len() / self.n_out;
        MatRef {
            data: &m.data[row0 * row_bytes..(row0 + n_out) * row_bytes],
            n_out,
            ..m
        }
    }
}

/// Loads tensors by name with the shapes an architecture expects.
pub struct WeightLoader<'a> {
    pub file: &'a GgufFile,
}

impl<'a> WeightLoader<'a> {
    pub fn new(file: &'a GgufFile) -> Self {
        WeightLoader { file }
    }

    fn usable(&self, t: TensorData) -> Result<TensorData> {
        if kernels::kernels(t.ty).is_none() {
            return Err(ModelError::UnsupportedWeightType {
                tensor: t.name.clone(),
                ty: t.ty,
            });
        }
        Ok(t)
    }

    /// A matrix `{n_in, n_out}`.
    pub fn matrix(&self, name: &str, n_in: usize, n_out: usize) -> Result<Matrix> {
        let t = self.usable(self.file.tensor(name)?)?;
        t.expect_shape(&[n_in, n_out])?;
        Ok(Matrix {
            data: t,
            n_in,
            n_out,
        })
    }

    /// A stack of `n_mat` matrices `{n_in, n_out, n_mat}`.
    pub fn matrix_stack(
        &self,
        name: &str,
        n_in: usize,
        n_out: usize,
        n_mat: usize,
    ) -> Result<MatrixStack> {
        let t = self.usable(self.file.tensor(name)?)?;
        t.expect_shape(&[n_in, n_out, n_mat])?;
        Ok(MatrixStack {
            data: t,
            n_in,
            n_out,
            n_mat,
        })
    }

    pub fn opt_matrix(&self, name: &str, n_in: usize, n_out: usize) -> Result<Option<Matrix>> {
        if self.file.has_tensor(name) {
            self.matrix(name, n_in, n_out).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A vector of `n` values (norm weights, biases), converted to f32 once at load time.
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let t = self.usable(self.file.tensor(name)?)?;
        t.expect_shape(&[n])?;
        let mut v = vec![0f32; n];
        let k = kernels::kernels(t.ty).expect("checked by usable");
        (k.dequantize)(t.bytes(), &mut v);
        Ok(v)
    }

    /// Any small tensor of exactly `shape` (conv kernels `{d_conv, channels}`, SSM parameters
    /// stored as `{1, n}`), converted to f32 once at load time.
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.usable(self.file.tensor(name)?)?;
        t.expect_shape(shape)?;
        let mut v = vec![0f32; shape.iter().product()];
        let k = kernels::kernels(t.ty).expect("checked by usable");
        (k.dequantize)(t.bytes(), &mut v);
        Ok(v)
    }

    pub fn opt_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        if self.file.has_tensor(name) {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}
