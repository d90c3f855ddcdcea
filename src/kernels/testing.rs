//! Test helpers shared by the kernel tests: a small deterministic RNG, random blocks and
//! activations, and the generic `vec_dot` checks every weight type runs.

use super::block::{blocks_mut, Block, Half};
use super::quants::{q8_1, q8_k};
use super::{kernels, quantize_activation, GgmlType};

/// xorshift64*: deterministic and good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }

    /// Roughly standard normal (sum of uniforms).
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform(-1.0, 1.0)).sum::<f32>() * 0.866
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for b in bytes {
            *b = self.next_u64() as u8;
        }
    }

    /// A plausible per-block f16 scale: either sign, magnitude between 1e-3 and 0.1.
    pub fn scale(&mut self) -> Half {
        let magnitude = 10f32.powf(self.uniform(-3.0, -1.0));
        Half::from_f32(if self.below(2) == 0 {
            magnitude
        } else {
            -magnitude
        })
    }
}

/// `n_blocks` random blocks (random bits are a valid block in every format); `fix` then makes the
/// scales sane so that dot products stay finite.
pub fn random_blocks<B: Block>(
    rng: &mut Rng,
    n_blocks: usize,
    fix: impl Fn(&mut B, &mut Rng),
) -> Vec<u8> {
    let mut bytes = vec![0u8; n_blocks * size_of::<B>()];
    rng.fill(&mut bytes);
    for b in blocks_mut::<B>(&mut bytes) {
        fix(b, rng);
    }
    bytes
}

/// Activations with the features that stress quantizers: normal values, a rare large outlier,
/// one all-zero group of 32 and a group of negative zeros (when `n` leaves room for them).
pub fn random_activations(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n)
        .map(|_| {
            if rng.below(97) == 0 {
                30.0 * rng.normal()
            } else {
                rng.normal()
            }
        })
        .collect();
    if n >= 96 {
        x[32..64].fill(0.0);
        x[64..96].fill(-0.0);
    }
    x
}

/// Converts an activation row back to f32 (the inverse of `quantize_activation` up to rounding).
pub fn dequantize_activation(act_ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    match act_ty {
        GgmlType::Q8_1 => q8_1::dequantize(src, dst),
        GgmlType::Q8_K => q8_k::dequantize(src, dst),
        _ => (kernels(act_ty)
            .expect("activation type is also a weight type")
            .dequantize)(src, dst),
    }
}

/// An a-priori bound on `|x_i - dequant(quant(x))_i|` for each element, from the activation
/// format alone: half a quantization step (plus the f16 rounding of the step for Q8_0/Q8_1).
fn activation_error_bound(act_ty: GgmlType, x: &[f32]) -> Vec<f64> {
    let per_block = |block: usize, rel_step: f64| -> Vec<f64> {
        x.chunks(block)
            .flat_map(|c| {
                let amax = c.iter().fold(0f64, |m, v| m.max(f64::from(v.abs())));
                std::iter::repeat_n(amax * rel_step, c.len())
            })
            .collect()
    };
    match act_ty {
        GgmlType::F32 => vec![0.0; x.len()],
        GgmlType::F16 => x
            .iter()
            .map(|v| f64::from(v.abs()) * 2f64.powi(-11))
            .collect(),
        GgmlType::BF16 => x
            .iter()
            .map(|v| f64::from(v.abs()) * 2f64.powi(-8))
            .collect(),
        GgmlType::Q8_0 | GgmlType::Q8_1 => per_block(32, 0.5 / 127.0 + 2f64.powi(-11)),
        GgmlType::Q8_K => per_block(256, 0.5 / 127.0 * (1.0 + 1e-6)),
        other => panic!("{other} is not an activation format"),
    }
}

fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}

fn abs_dot_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| f64::from(a.abs()) * f64::from(b.abs()))
        .sum()
}

/// Extra tolerance of the tight check for roundings the integer path makes on purpose, from the
/// weight row and the quantized activation row (only Q8_1's f16 block sum needs one).
pub type ExtraTolerance = fn(w: &[u8], act: &[u8]) -> f64;

pub fn no_extra_tolerance(_: &[u8], _: &[u8]) -> f64 {
    0.0
}

/// Checks `vec_dot(w, quantize(x))` of weight type `ty` two ways:
/// - against `dequant(w) · x` within the error the activation format allows, and
/// - tightly (1e-5 of the absolute dot) against `dequant(w) · dequant(quant(x))`, which checks the
///   integer path exactly.
pub fn check_vec_dot(ty: GgmlType, w: &[u8], x: &[f32], extra: ExtraTolerance) {
    let k = kernels(ty).expect("weight type");
    let n = x.len();
    let mut act = vec![0u8; k.act_ty.row_bytes(n).expect("whole blocks")];
    quantize_activation(k.act_ty, x, &mut act);
    let got = f64::from((k.vec_dot)(n, w, &act));

    let mut wd = vec![0f32; n];
    (k.dequantize)(w, &mut wd);
    let mut ad = vec![0f32; n];
    dequantize_activation(k.act_ty, &act, &mut ad);

    let tight_tol = 1e-5 * abs_dot_f64(&wd, &ad) + extra(w, &act) + 1e-30;
    let tight_want = dot_f64(&wd, &ad);
    assert!(
        (got - tight_want).abs() <= tight_tol,
        "{ty}: vec_dot {got} vs dequantized-activation dot {tight_want} (tol {tight_tol})"
    );

    let bound = activation_error_bound(k.act_ty, x);
    let quant_tol: f64 = wd
        .iter()
        .zip(&bound)
        .map(|(&w, b)| f64::from(w.abs()) * b)
        .sum();
    let loose_tol = quant_tol + tight_tol;
    let want = dot_f64(&wd, x);
    assert!(
        (got - want).abs() <= loose_tol,
        "{ty}: vec_dot {got} vs f32-activation dot {want} (tol {loose_tol})"
    );
}

/// Runs [`check_vec_dot`] on random weights of type `ty` for a few row lengths (multiples of 32
/// elements, or of the block size if larger).
pub fn check_random_vec_dots<B: Block>(
    ty: GgmlType,
    fix: impl Fn(&mut B, &mut Rng) + Copy,
    extra: ExtraTolerance,
) {
    let mut rng = Rng::new(ty.id().into());
    let unit = ty.block_size().max(32);
    for units in [1, 2, 5, 16] {
        let n = units * unit;
        let w = random_blocks::<B>(&mut rng, n / ty.block_size(), fix);
        let x = random_activations(&mut rng, n);
        check_vec_dot(ty, &w, &x, extra);
    }
}

/// Weight rows of `ty` (`n_blocks` blocks each) for comparing a fast kernel with its scalar
/// twin: random quants with sane scales; fully random bytes (NaN, infinite and subnormal
/// scales); all-ones quants with the largest f16 scale; all zeros; random quants with the
/// smallest subnormal and with the most negative f16 scale.
pub fn kernel_weight_rows(rng: &mut Rng, ty: GgmlType, n_blocks: usize) -> Vec<Vec<u8>> {
    let bb = ty.block_bytes();
    // Byte offsets of the f16 scales (MXFP4's E8M0 scale is one byte at 0).
    let offsets: &[usize] = match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        GgmlType::MXFP4 => &[],
        _ => &[0],
    };
    let random = |rng: &mut Rng, scale: &mut dyn FnMut(&mut Rng) -> Half| {
        let mut row = vec![0u8; n_blocks * bb];
        rng.fill(&mut row);
        for b in row.chunks_exact_mut(bb) {
            for &o in offsets {
                b[o..o + 2].copy_from_slice(&scale(rng).0);
            }
            if ty == GgmlType::MXFP4 {
                b[0] = 119 + rng.below(17) as u8;
            }
        }
        row
    };
    let sane = random(rng, &mut |r| r.scale());
    let tiny = random(rng, &mut |_| Half::from_bits(0x0001));
    let negative = random(rng, &mut |_| Half::from_bits(0xFBFF));
    let mut wild = vec![0u8; n_blocks * bb];
    rng.fill(&mut wild);
    let mut ones = vec![0xFFu8; n_blocks * bb];
    for b in ones.chunks_exact_mut(bb) {
        for &o in offsets {
            b[o..o + 2].copy_from_slice(&Half::from_bits(0x7BFF).0);
        }
    }
    vec![sane, wild, ones, vec![0u8; n_blocks * bb], tiny, negative]
}

/// Activation rows of `act_ty` (Q8_0, Q8_1 or Q8_K) for the same comparisons: quantized random
/// values, then every quant -128, 127, alternately -128 and 127, -128 with the largest scale
/// and 127 with the smallest (Q8_K group sums kept consistent).
pub fn kernel_activation_rows(rng: &mut Rng, act_ty: GgmlType, n: usize) -> Vec<Vec<u8>> {
    use super::quants::{q8_0::BlockQ8_0, q8_1::BlockQ8_1};
    let mut row = vec![0u8; act_ty.row_bytes(n).expect("whole blocks")];
    quantize_activation(act_ty, &random_activations(rng, n), &mut row);
    let (huge, tiny) = match act_ty {
        GgmlType::Q8_K => (3e38, 1e-45),
        _ => (65504.0, 6e-8),
    };
    /// Quant of element `i`, and the block scale (`None` keeps the quantizer's).
    type Edge = (fn(usize) -> i8, Option<f32>);
    let edges: [Edge; 5] = [
        (|_| i8::MIN, None),
        (|_| i8::MAX, None),
        (|i| if i % 2 == 0 { i8::MIN } else { i8::MAX }, None),
        (|_| i8::MIN, Some(huge)),
        (|_| i8::MAX, Some(tiny)),
    ];
    let mut rows = vec![row.clone()];
    for (q, d) in edges {
        let mut r = row.clone();
        match act_ty {
            GgmlType::Q8_0 => {
                for b in blocks_mut::<BlockQ8_0>(&mut r) {
                    b.qs = std::array::from_fn(q);
                    b.d = d.map_or(b.d, Half::from_f32);
                }
            }
            GgmlType::Q8_1 => {
                for b in blocks_mut::<BlockQ8_1>(&mut r) {
                    b.qs = std::array::from_fn(q);
                    b.d = d.map_or(b.d, Half::from_f32);
                }
            }
            _ => {
                for b in blocks_mut::<q8_k::BlockQ8K>(&mut r) {
                    *b = q8_k::BlockQ8K::from_quants(std::array::from_fn(q), d.unwrap_or(b.d()));
                }
            }
        }
        rows.push(r);
    }
    rows
}

/// Bit-equal, or both NaN (a kernel may not choose between NaN payloads).
pub fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Checks that a four-row kernel gives exactly its one-row kernel's result for each activation
/// row, over every kind of weight row and four activation rows of two super-blocks.
pub fn assert_four_rows_equal_one(
    rng: &mut Rng,
    ty: GgmlType,
    one: super::VecDot,
    four: super::VecDot4,
    level: &str,
) {
    let act_ty = super::portable_kernels(ty).expect("a weight type").act_ty;
    let n = 2 * super::quants::superblock::QK_K;
    for w in kernel_weight_rows(rng, ty, n / ty.block_size()) {
        let acts = kernel_activation_rows(rng, act_ty, n);
        let a = [&acts[0][..], &acts[1][..], &acts[2][..], &acts[3][..]];
        let mut out = [0f32; 4];
        four(n, &w, a, &mut out);
        for (o, a) in out.iter().zip(a) {
            let r = one(n, &w, a);
            assert!(same_f32(*o, r), "{ty} {level}: four-row {o} vs one-row {r}");
        }
    }
}
