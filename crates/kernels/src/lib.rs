//! Penwright's quantized kernels: weight matrices stay in their file's block format
//! (GGUF's Q4_0 … Q6_K, or f16/bf16/f32) and are multiplied in it.
//!
//! - [`format`]: the ggml types and their block geometry.
//! - [`dequant`]: the reference dequantizer every kernel is tested against.
//! - [`cpu`]: SIMD dot products and tiled GEMM on the CPU.
//! - [`cube`]: the GPU kernels (cubecl: wgpu and burn's other GPU runtimes).
//! - [`ops`]: all of it as a burn backend extension, with autodiff.
//! - [`quantize`]: f32 rows to Q8_0/Q4_0/Q4_K blocks (quantizing at load).
//!
//! `ops` and `cube` need the `burn` feature (on by default); without it the crate is the
//! formats, the dequantizer and the CPU kernels alone (how scripts/check-aarch64.sh tests
//! the NEON kernels under qemu).

pub mod cpu;
#[cfg(feature = "burn")]
pub mod cube;
pub mod dequant;
pub mod format;
#[cfg(feature = "burn")]
pub mod ops;
pub mod quantize;
pub mod random;

#[cfg(test)]
mod testing;

pub use format::GgmlType;
