//! Per-kernel speed: `cargo bench --bench kernels`.
//!
//! - `vec_dot/<type>`: one 4096-element weight row dotted with one activation row, for the
//!   kernel the dispatcher selected on this CPU, the portable (`wide`) one and the scalar
//!   reference twin.
//! - `matmul/<type>/<tokens>`: a 896 × 4864 matrix (Qwen2.5-0.5B's FFN shape) times 1 token
//!   (decode: the several-row kernel where the CPU has one) and 128 tokens (prefill: the tiles),
//!   on the compute pool, as the forward pass calls it.
//!
//! Quantized weights are random bytes: every bit pattern is a valid block, and the kernels'
//! time does not depend on the values (integer SIMD, f16 scales that cannot make f32
//! denormals). Float weights are converted from random floats so they hold no denormals.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ggufd::kernels::matmul::{matmul, MatRef};
use ggufd::kernels::{
    kernels, portable_kernels, quantize_activation, scalar_vec_dot, threads, GgmlType,
};
use std::hint::black_box;

const TYPES: [GgmlType; 11] = {
    use GgmlType as T;
    [
        T::Q4_0,
        T::Q4_1,
        T::Q5_0,
        T::Q5_1,
        T::Q8_0,
        T::Q4_K,
        T::Q5_K,
        T::Q6_K,
        T::IQ4_XS,
        T::F16,
        T::F32,
    ]
};

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.unit()).collect()
    }
}

/// `n_rows` rows of `n_in` weights of type `ty`.
fn weights(rng: &mut Rng, ty: GgmlType, n_in: usize, n_rows: usize) -> Vec<u8> {
    let row_bytes = ty.row_bytes(n_in).expect("whole blocks");
    let mut w = vec![0u8; row_bytes * n_rows];
    if matches!(ty, GgmlType::F16 | GgmlType::F32) {
        for row in w.chunks_exact_mut(row_bytes) {
            quantize_activation(ty, &rng.floats(n_in), row);
        }
    } else {
        w.iter_mut().for_each(|b| *b = rng.next() as u8);
    }
    w
}

/// `n_tok` activation rows in the format `ty`'s kernels take.
fn activations(rng: &mut Rng, ty: GgmlType, n_in: usize, n_tok: usize) -> Vec<u8> {
    let act_ty = kernels(ty).expect("a weight type").act_ty;
    let row_bytes = act_ty.row_bytes(n_in).expect("whole blocks");
    let mut a = vec![0u8; row_bytes * n_tok];
    for row in a.chunks_exact_mut(row_bytes) {
        quantize_activation(act_ty, &rng.floats(n_in), row);
    }
    a
}

fn vec_dot(c: &mut Criterion) {
    const N: usize = 4096;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for ty in TYPES {
        let w = weights(&mut rng, ty, N, 1);
        let a = activations(&mut rng, ty, N, 1);
        let selected = kernels(ty).expect("a weight type");
        let candidates = [
            (selected.imp, selected.vec_dot),
            (
                "portable",
                portable_kernels(ty).expect("a weight type").vec_dot,
            ),
            ("scalar", scalar_vec_dot(ty).expect("a weight type")),
        ];
        let mut group = c.benchmark_group(format!("vec_dot/{ty}"));
        group.throughput(Throughput::Elements(N as u64));
        for (i, (name, dot)) in candidates.into_iter().enumerate() {
            // The selected kernel is the portable one where no ISA has its own.
            if i == 1 && selected.imp == "portable" {
                continue;
            }
            group.bench_function(name, |b| b.iter(|| dot(N, black_box(&w), black_box(&a))));
        }
        group.finish();
    }
}

fn matmuls(c: &mut Criterion) {
    const N_IN: usize = 896;
    const N_OUT: usize = 4864;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads::default_threads())
        .build_global()
        .ok();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for ty in [
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let w = weights(&mut rng, ty, N_IN, N_OUT);
        let mat = MatRef {
            ty,
            data: &w,
            n_in: N_IN,
            n_out: N_OUT,
        };
        let mut group = c.benchmark_group(format!("matmul/{ty}"));
        for n_tok in [1, 128] {
            let x = rng.floats(N_IN * n_tok);
            let mut y = vec![0f32; N_OUT * n_tok];
            group.throughput(Throughput::Elements((N_IN * N_OUT * n_tok) as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n_tok), &n_tok, |b, &n| {
                b.iter(|| threads::on_compute_pool(|| matmul(mat, black_box(&x), n, &mut y)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, vec_dot, matmuls);
criterion_main!(benches);
