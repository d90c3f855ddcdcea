"""Shared pieces of the random-weight benchmark model generators (make_*_bench_model.py):
weights scaled like the conformance corpus, and a GGUF writer that streams one tensor at a time
so memory stays at one tensor however large the model."""

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

# Elements per block and bytes per block of the types the generators write.
BLOCKS = {
    GGMLQuantizationType.F32: (1, 4),
    GGMLQuantizationType.F16: (1, 2),
    GGMLQuantizationType.Q8_0: (32, 34),
}


class RandomWeights:
    """Values per tensor kind: "matrix" (quantized to `mat_type`), and F32 "norm", "router",
    "ssm_a", "dt_bias", "conv"."""

    def __init__(self, seed, mat_type):
        self.rng = np.random.default_rng(seed)
        self.mat_type = GGMLQuantizationType[mat_type]

    def ggml_type(self, kind):
        return self.mat_type if kind == "matrix" else GGMLQuantizationType.F32

    def values(self, shape, kind):
        """f32 values in numpy order (ggml shape reversed)."""
        np_shape = tuple(reversed(shape))
        rng = self.rng
        if kind == "norm":
            return (1.0 + 0.1 * rng.standard_normal(np_shape)).astype(np.float32)
        if kind == "ssm_a":
            return (-np.exp(rng.uniform(-1.0, 1.5, np_shape))).astype(np.float32)
        if kind == "dt_bias":
            return rng.uniform(-3.0, -1.0, np_shape).astype(np.float32)
        if kind == "conv":
            return (0.3 * rng.standard_normal(np_shape)).astype(np.float32)
        std = 0.05 * np.sqrt(256.0 / shape[0])
        return (std * rng.standard_normal(np_shape, dtype=np.float32)).astype(np.float32)

    def encoded(self, shape, kind):
        v = self.values(shape, kind)
        ty = self.ggml_type(kind)
        if ty == GGMLQuantizationType.F32:
            return v
        if ty == GGMLQuantizationType.F16:
            return v.astype(np.float16)
        return quantize(v, ty)


def write_gguf(out, arch, write_metadata, specs, weights, progress_every=20):
    """Writes `specs` — (name, ggml shape {ne0, ne1, ...}, kind) — after `write_metadata(writer)`."""
    w = GGUFWriter(out, arch)
    write_metadata(w)
    specs = list(specs)
    # The header needs every tensor's byte size before any data; sizes follow from shape and type.
    for name, shape, kind in specs:
        ty = weights.ggml_type(kind)
        block, block_bytes = BLOCKS[ty]
        n_bytes = int(np.prod(shape)) // block * block_bytes
        # A non-uint8 dtype makes gguf-py take the shape as element counts, not bytes.
        np_dtype = np.float16 if ty == GGMLQuantizationType.F16 else np.float32
        w.add_tensor_info(name, tuple(reversed(shape)), np.dtype(np_dtype), n_bytes, raw_dtype=ty)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    total = 0
    for i, (name, shape, kind) in enumerate(specs):
        data = weights.encoded(shape, kind)
        total += data.nbytes
        w.write_tensor_data(data)
        if i % progress_every == 0:
            print(f"  {i + 1}/{len(specs)} {name} ({total / 2**20:.0f} MiB so far)", flush=True)
    w.close()
    print(f"wrote {out}: {len(specs)} tensors, {total / 2**20:.0f} MiB of tensor data")
