//! Products with weight matrices kept in their file's block format, on the CPU.
//!
//! - Few activation rows (decoding, a keystroke's prefill): the rows are quantized once to
//!   8-bit blocks ([`activation`]) and every weight row is an integer dot product in SIMD
//!   (`x86` where the CPU has AVX2, with AVX-512 VNNI where it has that too; `neon` on
//!   aarch64, with `sdot` where the CPU has it; else [`scalar`]); unquantized f32/f16/bf16
//!   weights are float dot products.
//! - More rows (a prompt, a typed sentence, perplexity): the same 8-bit activations against
//!   weight rows unpacked once per product and interleaved, four weight rows by several
//!   activation rows a step ([`batched`]).
//! - Float weights, and CPUs without AVX2 (aarch64 included): tiles of weight rows are
//!   dequantized to f32 and multiplied with the `gemm` crate's kernels (NEON on aarch64).
//!
//! Output rows are split across rayon's pool (persistent threads, nothing spawned per call).

pub mod activation;
pub mod attention;
pub mod batched;
pub mod gated;
pub mod loss;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod norm;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::dequant::{DequantError, dequantize_on_thread};
use crate::format::GgmlType;
use activation::{ActivationBlocks, ActivationRow, QuantizedActivations};

/// The instruction sets the dot products can use, found once at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 + AVX-512 F/BW/VL/VNNI for the byte products.
    Avx512Vnni,
    /// aarch64's NEON (every aarch64 CPU has it): widening byte products.
    Neon,
    /// NEON with Armv8.2's dot-product instructions (`sdot`: Apple M1 and later, Graviton 2
    /// and later).
    NeonDotprod,
}

impl Isa {
    /// The best this CPU supports (`PENWRIGHT_ISA=scalar|avx2|neon` caps it, for
    /// comparisons).
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let cap = std::env::var("PENWRIGHT_ISA").ok();
            let best = Self::supported();
            match cap.as_deref() {
                Some("scalar") => Isa::Scalar,
                Some("avx2") if best == Isa::Avx512Vnni => Isa::Avx2,
                Some("neon") if best == Isa::NeonDotprod => Isa::Neon,
                _ => best,
            }
        })
    }

    /// Every instruction set this CPU runs, scalar first (for tests).
    pub fn all_supported() -> Vec<Isa> {
        let best = Self::supported();
        let ladder: &[Isa] = match best {
            Isa::Scalar => &[Isa::Scalar],
            Isa::Avx2 => &[Isa::Scalar, Isa::Avx2],
            Isa::Avx512Vnni => &[Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni],
            Isa::Neon => &[Isa::Scalar, Isa::Neon],
            Isa::NeonDotprod => &[Isa::Scalar, Isa::Neon, Isa::NeonDotprod],
        };
        ladder.to_vec()
    }

    /// Whether this is one of the x86 levels (AVX2 and up), which the x86 kernels serve.
    pub fn is_x86(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::Avx512Vnni)
    }

    #[cfg_attr(target_arch = "aarch64", allow(unreachable_code))]
    fn supported() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            // every CPU with VNNI has F and BW too; the batched kernel uses 512-bit registers
            let vnni = is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw");
            if avx2 && vnni {
                return Isa::Avx512Vnni;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        return if std::arch::is_aarch64_feature_detected!("dotprod") {
            Isa::NeonDotprod
        } else {
            Isa::Neon
        };
        Isa::Scalar
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "AVX2",
            Isa::Avx512Vnni => "AVX-512 VNNI",
            Isa::Neon => "NEON",
            Isa::NeonDotprod => "NEON dotprod",
        }
    }
}

/// Runs `f` on one of rayon's threads (at once when already on one). A model's forward pass
/// goes through here: the kernels' parallel parts then run on the pool beside it, and no
/// caller thread sits between them competing for the cores.
pub fn on_compute_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// [`on_compute_threads`] with the pool's other threads kept awake until `f` returns: each
/// runs whatever work the pool has and spins in between, as llama.cpp's threads do within a
/// graph, instead of going to sleep after every product. A CPU forward pass is a chain of
/// short parallel products (a 1.7B model's decode step: 97 of them, 60–600 µs each) with a
/// little serial work between them, and a thread that has gone to sleep takes tens of
/// microseconds to wake for the next one; measured on a 1.7B-shape Q4_K_M model, 2
/// threads: a 2048×2048 product 84–104 → 61–65 µs, decode +13–28%. Costs the other cores'
/// idle time during the pass, so the GPU's passes do not use it.
pub fn on_warm_compute_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        let owner = rayon::current_thread_index();
        for _ in 1..rayon::current_num_threads() {
            let done = &done;
            s.spawn(move |_| {
                // picked up by `f`'s own thread while it waits inside `f`: spinning there
                // would wait for `f` to return, under `f` itself
                if rayon::current_thread_index() == owner {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        let out = f();
        done.store(true, Ordering::Release);
        out
    })
}

/// A weight matrix `[rows, cols]` in a ggml block format: each row (one output feature)
/// is `cols` input features in consecutive blocks.
#[derive(Debug, Clone, Copy)]
pub struct PackedMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    bytes: &'a [u8],
    row_bytes: usize,
}

impl<'a> PackedMatrix<'a> {
    /// Checks that `bytes` holds exactly `rows × cols` elements of `ty` (trailing padding
    /// is allowed and ignored).
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &'a [u8],
    ) -> Result<Self, DequantError> {
        if !ty.is_supported() {
            return Err(DequantError::Unsupported(ty));
        }
        let row_bytes = ty.row_bytes(cols).ok_or(DequantError::NotBlockMultiple {
            dtype: ty,
            n_elems: cols,
            block_size: ty.block_size(),
        })?;
        let expected = row_bytes.saturating_mul(rows);
        if bytes.len() < expected {
            return Err(DequantError::WrongLength {
                dtype: ty,
                n_elems: rows.saturating_mul(cols),
                expected,
                actual: bytes.len(),
            });
        }
        Ok(PackedMatrix {
            ty,
            rows,
            cols,
            bytes: &bytes[..expected],
            row_bytes,
        })
    }

    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.bytes[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Rows `start..start + n` dequantized to f32 into `out` (`n × cols`).
    pub fn dequantize_rows(&self, start: usize, out: &mut [f32]) {
        let n = out.len() / self.cols;
        let src = &self.bytes[start * self.row_bytes..(start + n) * self.row_bytes];
        dequantize_on_thread(self.ty, src, out).expect("whole rows of whole blocks");
    }
}

/// Which activation blocks a weight type's dot product reads; `None` for float weights.
pub fn activation_blocks(ty: GgmlType) -> Option<ActivationBlocks> {
    use GgmlType::*;
    match ty {
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 => Some(ActivationBlocks::B32),
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => Some(ActivationBlocks::B256),
        _ => None,
    }
}

/// One weight row times one quantized activation row with the given instruction set.
#[inline]
pub fn dot(isa: Isa, ty: GgmlType, w: &[u8], a: ActivationRow<'_>) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa` values other than Scalar are only produced where the CPU has them.
        Isa::Avx512Vnni => unsafe { x86::dot_vnni(ty, w, a) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::dot_avx2(ty, w, a) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above (NEON itself is part of every aarch64 CPU).
        Isa::NeonDotprod => unsafe { neon::dot_dotprod(ty, w, a) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::dot_neon(ty, w, a) },
        _ => scalar::dot(ty, w, a),
    }
}

/// One unquantized weight row times an f32 row.
#[inline]
pub fn dot_float(isa: Isa, ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot`.
        Isa::Avx512Vnni | Isa::Avx2 => unsafe { x86::dot_float_avx2(ty, w, x) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Isa::Neon | Isa::NeonDotprod => unsafe { neon::dot_float_neon(ty, w, x) },
        _ => scalar::dot_float(ty, w, x),
    }
}

/// Up to this many activation rows use the dot-product path (8-bit activations); more take
/// the batched 8-bit path where it handles the type (see [`batched`]), else f32 GEMM.
///
/// Every quantized product thus runs on 8-bit activations, as llama.cpp's do at every batch
/// size. Short prompts (7–63 rows) used to take the f32 path to keep their activations exact,
/// at four to five times the cost on big models (1.7B Q4_K_M, 31 rows: 6.2 s against 1.35 s);
/// measured on 768 positions of real text against llama.cpp
/// (`scripts/reference/llama_cpp_agreement.py`, both with an f32 KV cache), the two agree
/// with it equally often (727 and 722 top-1 tokens, 597 and 596 of the 603 clear ones).
pub const DOT_MAX_ROWS: usize = 6;

/// How a product of `m` activation rows with a `ty` matrix is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Dot products on 8-bit activations (quantized types) or f32 (float types).
    Dot,
    /// f32 GEMM on dequantized tiles.
    Gemm,
    /// Interleaved 8-bit products (see [`batched`]).
    Batched,
}

pub fn path_for(isa: Isa, ty: GgmlType, m: usize) -> Path {
    if m <= DOT_MAX_ROWS {
        Path::Dot
    } else if batched::supports(isa, ty) {
        Path::Batched
    } else {
        Path::Gemm
    }
}

/// A `*mut f32` that rayon tasks writing disjoint parts of one output may share.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes a disjoint set of elements, and the caller's `&mut` outlives
// the parallel section.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so closures capture the `Send` wrapper, not its field).
    fn at(self, i: usize) -> *mut f32 {
        // SAFETY: callers stay inside the output they were given.
        unsafe { self.0.add(i) }
    }
}

/// `y[m, w.rows] = x[m, w.cols] · Wᵀ`.
pub fn matmul(x: &[f32], m: usize, w: &PackedMatrix<'_>, y: &mut [f32]) {
    matmul_with(Isa::detect(), x, m, w, y)
}

/// [`matmul`] with a given instruction set (tests compare them).
pub fn matmul_with(isa: Isa, x: &[f32], m: usize, w: &PackedMatrix<'_>, y: &mut [f32]) {
    assert_eq!(x.len(), m * w.cols, "input is not [m, cols]");
    assert_eq!(y.len(), m * w.rows, "output is not [m, rows]");
    if m == 0 || w.rows == 0 {
        return;
    }
    match path_for(isa, w.ty, m) {
        Path::Batched => return matmul_batched(isa, x, m, w, y),
        Path::Gemm => return gemm_tiles(x, m, w, y),
        Path::Dot => {}
    }
    let out = SharedOut(y.as_mut_ptr());
    let rows = w.rows;
    // ~4 tasks per thread keeps the load balanced without much scheduling
    let per_task = rows
        .div_ceil(4 * rayon::current_num_threads())
        .clamp(8, 512);
    match activation_blocks(w.ty) {
        None => {
            (0..rows.div_ceil(per_task)).into_par_iter().for_each(|t| {
                for r in t * per_task..((t + 1) * per_task).min(rows) {
                    let wr = w.row(r);
                    for i in 0..m {
                        let v = dot_float(isa, w.ty, wr, &x[i * w.cols..(i + 1) * w.cols]);
                        // SAFETY: (i, r) is written by this task only.
                        unsafe { *out.at(i * rows + r) = v };
                    }
                }
            });
        }
        Some(blocks) => {
            let mut act = QuantizedActivations::new(blocks);
            act.quantize(x, m, w.cols);
            let act_rows: Vec<ActivationRow<'_>> = (0..m).map(|i| act.row(i)).collect();
            let act_rows = &act_rows;
            // one row at a time: each task streams its rows front to back, which the
            // hardware prefetcher follows at full memory bandwidth
            (0..rows.div_ceil(per_task)).into_par_iter().for_each(|t| {
                dot_rows(
                    isa,
                    w,
                    act_rows,
                    out,
                    t * per_task..((t + 1) * per_task).min(rows),
                );
            });
        }
    }
}

/// `ys[j][m, ws[j].rows] = x[m, cols] · ws[j]ᵀ` for several matrices over one input (a
/// decode step's q/k/v, or gate/up). Where all of them take the 8-bit dot-product path,
/// the input is quantized once per kind of activation block and every matrix's rows run in
/// one parallel region: the threads wake once instead of once a matrix, and the results
/// are those of [`matmul`] bit for bit. Otherwise each is a [`matmul`].
pub fn matmul_many(x: &[f32], m: usize, ws: &[PackedMatrix<'_>], ys: &mut [&mut [f32]]) {
    matmul_many_with(Isa::detect(), x, m, ws, ys)
}

/// Whether [`matmul_many`] fuses (`PENWRIGHT_FUSED=0` turns it off, for comparisons).
fn fusing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("PENWRIGHT_FUSED").as_deref() != Ok("0"))
}

/// [`matmul_many`] with a given instruction set (tests compare them).
pub fn matmul_many_with(
    isa: Isa,
    x: &[f32],
    m: usize,
    ws: &[PackedMatrix<'_>],
    ys: &mut [&mut [f32]],
) {
    assert_eq!(ws.len(), ys.len(), "one output a matrix");
    let Some(cols) = ws.first().map(|w| w.cols) else {
        return;
    };
    let fused = m > 0
        && fusing()
        && ws.iter().all(|w| {
            w.cols == cols
                && path_for(isa, w.ty, m) == Path::Dot
                && activation_blocks(w.ty).is_some()
        });
    if !fused {
        for (w, y) in ws.iter().zip(ys.iter_mut()) {
            matmul_with(isa, x, m, w, y);
        }
        return;
    }
    assert_eq!(x.len(), m * cols, "input is not [m, cols]");
    // the input quantized once for each kind of block the matrices read
    let mut kinds: Vec<(ActivationBlocks, QuantizedActivations)> = Vec::with_capacity(2);
    let mut kind_of = Vec::with_capacity(ws.len());
    for w in ws {
        let blocks = activation_blocks(w.ty).expect("quantized");
        let k = match kinds.iter().position(|(b, _)| *b == blocks) {
            Some(k) => k,
            None => {
                let mut act = QuantizedActivations::new(blocks);
                act.quantize(x, m, cols);
                kinds.push((blocks, act));
                kinds.len() - 1
            }
        };
        kind_of.push(k);
    }
    let act_rows: Vec<Vec<ActivationRow<'_>>> = kinds
        .iter()
        .map(|(_, act)| (0..m).map(|i| act.row(i)).collect())
        .collect();
    let outs: Vec<SharedOut> = ws
        .iter()
        .zip(ys.iter_mut())
        .map(|(w, y)| {
            assert_eq!(y.len(), m * w.rows, "output is not [m, rows]");
            SharedOut(y.as_mut_ptr())
        })
        .collect();
    let total: usize = ws.iter().map(|w| w.rows).sum();
    // ~8 tasks a thread: the matrices' rows differ in bytes (a Q4_K_M model's v is Q6_K in
    // some layers, q and k Q4_K), so the two halves of the tasks may too; finer tasks let
    // the thread done first take more (1.7B q/k/v, decoding: 194 → 175 µs a layer)
    let per_task = total
        .div_ceil(8 * rayon::current_num_threads())
        .clamp(8, 256);
    // (matrix, first row, end row) pieces of every matrix, in order
    let tasks: Vec<(usize, usize, usize)> = ws
        .iter()
        .enumerate()
        .flat_map(|(j, w)| {
            (0..w.rows)
                .step_by(per_task)
                .map(move |r| (j, r, (r + per_task).min(w.rows)))
        })
        .collect();
    let (act_rows, outs, kind_of) = (&act_rows, &outs, &kind_of);
    tasks.into_par_iter().for_each(|(j, start, end)| {
        dot_rows(isa, &ws[j], &act_rows[kind_of[j]], outs[j], start..end);
    });
}

/// Rows `rows` of `w` times every activation row in `act`, written to `out` (`[m, w.rows]`)
/// by the one task given those rows.
#[inline]
fn dot_rows(
    isa: Isa,
    w: &PackedMatrix<'_>,
    act: &[ActivationRow<'_>],
    out: SharedOut,
    rows: std::ops::Range<usize>,
) {
    for r in rows {
        let wr = w.row(r);
        for (i, a) in act.iter().enumerate() {
            let v = dot(isa, w.ty, wr, *a);
            // SAFETY: (i, r) is written by this task only (the caller's tasks own disjoint
            // rows of `out`).
            unsafe { *out.at(i * w.rows + r) = v };
        }
    }
}

/// Bytes of unpacked weight rows a batched task holds, and bytes of interleaved activation
/// rows it takes at a time: the two fit a core's L2 cache together.
const BATCHED_BLOCK_BYTES: usize = 384 << 10;

/// The batched 8-bit path (see [`batched`]): each task unpacks its weight rows once, then
/// takes the activation rows a chunk at a time, every group of four weight rows against the
/// whole chunk. Both sides of a chunk's products stay in the L2 cache: before, every four
/// weight rows streamed all the activation rows through it, which for an 8192-wide
/// matrix and a 512-token prompt is 4 MB from L3 a time (a 2048×8192 Q4_K product: 243 →
/// 299 GMAC/s on 2 threads, 8192×2048 371 → 416).
fn matmul_batched(isa: Isa, x: &[f32], m: usize, w: &PackedMatrix<'_>, y: &mut [f32]) {
    let rows = w.rows;
    let len = batched::block_len(w.ty);
    let mut quantized = QuantizedActivations::new(ActivationBlocks::B32);
    quantized.quantize(x, m, w.cols);
    let act = batched::InterleavedActivations::build(&quantized, len);
    let act = &act;
    let out = SharedOut(y.as_mut_ptr());
    let row_bytes = batched::padded_blocks(w.cols / len) * len;
    let fit = (BATCHED_BLOCK_BYTES / row_bytes).max(4);
    #[cfg(target_arch = "x86_64")]
    let chunk = fit.max(x86::VNNI_ROWS) / x86::VNNI_ROWS * x86::VNNI_ROWS;
    #[cfg(not(target_arch = "x86_64"))]
    let chunk = fit;
    // about four tasks a thread; where the activations take more than one chunk, none
    // holding more unpacked rows than fit beside a chunk, and as many for every thread
    let threads = rayon::current_num_threads();
    let per_task = if m <= chunk {
        rows.div_ceil(4 * threads).clamp(16, 256)
    } else {
        let tasks = (4 * threads)
            .max(rows.div_ceil(fit))
            .next_multiple_of(threads);
        rows.div_ceil(tasks).next_multiple_of(4).max(16)
    };
    thread_local! {
        // a thread's unpacked rows, kept from task to task (no task runs inside another)
        static UNPACKED: std::cell::RefCell<Vec<batched::UnpackedRow>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    (0..rows.div_ceil(per_task)).into_par_iter().for_each(|t| {
        UNPACKED.with_borrow_mut(|unpacked| {
            let (start, end) = (t * per_task, ((t + 1) * per_task).min(rows));
            // whole groups of four: a short last group repeats its last row (its results
            // are dropped)
            // one chunk: the same four buffers for every group, hot in L1
            let one_chunk = m <= chunk;
            let n_rows = if one_chunk {
                4
            } else {
                (end - start).next_multiple_of(4)
            };
            if unpacked.len() < n_rows {
                unpacked.resize_with(n_rows, Default::default);
            }
            for c0 in (0..m).step_by(chunk) {
                let c1 = (c0 + chunk).min(m);
                for r0 in (start..end).step_by(4) {
                    let n = (end - r0).min(4);
                    let at = if one_chunk { 0 } else { r0 - start };
                    let g = &mut unpacked[at..at + 4];
                    if c0 == 0 {
                        // unpacked as the first chunk reaches them: still in L1 for it
                        for (k, buf) in g.iter_mut().enumerate() {
                            batched::unpack_row(isa, w, r0 + k.min(n - 1), buf);
                        }
                    }
                    let ws = [&g[0], &g[1], &g[2], &g[3]];
                    let store = |i: usize, v: [f32; 4]| {
                        for (k, v) in v.into_iter().take(n).enumerate() {
                            // SAFETY: (i, r0 + k) belongs to this task only.
                            unsafe { *out.at(i * rows + r0 + k) = v };
                        }
                    };
                    rows4_batched(isa, len, ws, act, c0..c1, store);
                }
            }
        })
    });
}

/// Four unpacked weight rows times activation rows `range`, each result handed to `store`.
#[inline(always)]
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut, unused_variables))]
fn rows4_batched(
    isa: Isa,
    len: usize,
    ws: [&batched::UnpackedRow; 4],
    act: &batched::InterleavedActivations,
    range: std::ops::Range<usize>,
    mut store: impl FnMut(usize, [f32; 4]),
) {
    let mut i = range.start;
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni {
        const N: usize = x86::VNNI_ROWS;
        while i + N <= range.end {
            let rows_i = std::array::from_fn(|k| act.row(i + k));
            // SAFETY: `supports` admits only instruction sets the CPU has.
            let v = unsafe { x86::rows4_interleaved_vnni::<N>(len, ws, rows_i) };
            for (k, v) in v.into_iter().enumerate() {
                store(i + k, v);
            }
            i += N;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 {
        // SAFETY: as above.
        unsafe { x86::rows4_interleaved_avx2(ws, act, range.clone(), &mut store) };
        i = range.end;
    }
    for i in i..range.end {
        let v = match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx512Vnni => unsafe {
                x86::rows4_interleaved_vnni::<1>(len, ws, [act.row(i)])[0]
            },
            _ => batched::rows4_scalar(ws, act, i),
        };
        store(i, v);
    }
}

/// Bytes of f32 weights a GEMM tile holds (fits the L2 cache beside the activations).
const TILE_BYTES: usize = 256 << 10;

/// The GEMM path: tiles of weight rows dequantized and multiplied, in parallel.
fn gemm_tiles(x: &[f32], m: usize, w: &PackedMatrix<'_>, y: &mut [f32]) {
    let (rows, cols) = (w.rows, w.cols);
    if w.ty == GgmlType::F32 {
        // aligned f32 rows are already what the GEMM reads
        if let Ok(wf) = bytemuck::try_cast_slice::<u8, f32>(w.bytes) {
            // SAFETY: the slices hold [m, cols], [rows, cols] and [m, rows].
            unsafe {
                gemm_f32(
                    m,
                    rows,
                    cols,
                    y.as_mut_ptr(),
                    rows,
                    x.as_ptr(),
                    wf.as_ptr(),
                    true,
                )
            };
            return;
        }
    }
    let tile = (TILE_BYTES / (4 * cols)).clamp(16, 256).min(rows);
    let out = SharedOut(y.as_mut_ptr());
    (0..rows.div_ceil(tile))
        .into_par_iter()
        .for_each_init(Vec::new, |buf, t| {
            let r0 = t * tile;
            let n = tile.min(rows - r0);
            buf.resize(n * cols, 0.0);
            w.dequantize_rows(r0, buf);
            // SAFETY: this task writes columns r0..r0 + n of every output row only.
            unsafe {
                gemm_f32(
                    m,
                    n,
                    cols,
                    out.at(r0),
                    rows,
                    x.as_ptr(),
                    buf.as_ptr(),
                    false,
                )
            };
        });
}

/// `dst[m, n] (row stride dst_rs) = lhs[m, k] · rhsᵀ` for `rhs` stored `[n, k]` row-major.
///
/// # Safety
/// The pointers cover those extents.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    rhs_nk: *const f32,
    parallel: bool,
) {
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            lhs,
            1,
            k as isize,
            rhs_nk,
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `y[m, w.cols] = g[m, w.rows] · W` (the gradient of [`matmul`] with respect to its
/// input), from tiles of dequantized rows: memory stays bounded whatever the matrix.
pub fn matmul_transposed(g: &[f32], m: usize, w: &PackedMatrix<'_>, y: &mut [f32]) {
    let (rows, cols) = (w.rows, w.cols);
    assert_eq!(g.len(), m * rows, "gradient is not [m, rows]");
    assert_eq!(y.len(), m * cols, "output is not [m, cols]");
    y.fill(0.0);
    if m == 0 || rows == 0 {
        return;
    }
    let tile = ((4 * TILE_BYTES) / (4 * cols)).clamp(16, 1024).min(rows);
    let mut buf = vec![0.0f32; tile * cols];
    for r0 in (0..rows).step_by(tile) {
        let n = tile.min(rows - r0);
        let buf = &mut buf[..n * cols];
        w.dequantize_rows(r0, buf);
        // y[m, cols] += g[:, r0..r0 + n] · buf[n, cols]
        // SAFETY: the pointers cover [m, rows] (row stride rows), [n, cols] and [m, cols].
        unsafe {
            gemm::gemm(
                m,
                cols,
                n,
                y.as_mut_ptr(),
                1,
                cols as isize,
                true,
                g.as_ptr().add(r0),
                1,
                rows as isize,
                buf.as_ptr(),
                1,
                cols as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
    }
}

/// Rows `ids` of `w`, dequantized (an embedding lookup): `out[ids.len(), cols]`.
pub fn gather_rows(w: &PackedMatrix<'_>, ids: &[usize], out: &mut [f32]) {
    assert_eq!(out.len(), ids.len() * w.cols);
    for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(w.cols)) {
        w.dequantize_rows(id, dst);
    }
}

/// The whole matrix dequantized (`[rows, cols]`).
pub fn dequantize(w: &PackedMatrix<'_>, out: &mut [f32]) {
    assert_eq!(out.len(), w.rows * w.cols);
    let per = (TILE_BYTES / (4 * w.cols.max(1))).max(1);
    out.par_chunks_mut(per * w.cols)
        .enumerate()
        .for_each(|(t, chunk)| w.dequantize_rows(t * per, chunk));
}

#[cfg(test)]
mod tests;
