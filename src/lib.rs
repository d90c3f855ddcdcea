//! ggufd: run quantized LLMs from GGUF files on edge devices.
//!
//! Layers, top to bottom (each depends only on the ones below it):
//! `cli` → `server` (the gRPC daemon) → `engine` (tokenizer, sampling, generation) → `model` (architectures) →
//! `kernels` (quant formats, matmul) → `gguf` (file parsing and mapping). `alloc` (process
//! memory) serves them all.

pub mod alloc;
pub mod cli;
pub mod engine;
pub mod gguf;
pub mod kernels;
pub mod model;
pub mod panic_guard;
pub mod server;
