//! The packed-weight operations as a burn backend extension: `Tensor`-level functions
//! ([`packed_linear`], [`packed_rows`], [`packed_dequantize`]) that dispatch to the CPU
//! kernels on flex, to the cubecl kernels on wgpu (with fusion), and through autodiff with
//! a hand-written backward pass (the weights are frozen: only the input gets a gradient,
//! computed from the same blocks).
//!
//! A packed weight is a 1-D `u32` tensor holding the matrix's bytes exactly as the file
//! stores them (padded to whole words), and a [`PackedLayout`] saying what they are.

use burn::backend::Scalar;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bytes, DType, FloatDType, IndexingUpdateOp, Int, Shape, Slice, Tensor};

use crate::cpu::{self, PackedMatrix};
use crate::format::GgmlType;

/// What a packed weight tensor holds: `rows × cols` elements of `ty`, row-major, each row
/// a run of whole blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedLayout {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
}

impl PackedLayout {
    /// Bytes of the matrix (without the padding to whole words).
    pub fn byte_len(&self) -> Option<usize> {
        self.ty.row_bytes(self.cols)?.checked_mul(self.rows)
    }

    /// `u32` words the packed tensor has.
    pub fn word_len(&self) -> Option<usize> {
        Some(self.byte_len()?.div_ceil(4))
    }
}

/// Output shape of `x[.., cols] · Wᵀ`.
fn linear_shape(x: &Shape, layout: &PackedLayout) -> Shape {
    with_last(x, layout.rows)
}

/// Output shape of `g[.., rows] · W`.
fn transposed_shape(g: &Shape, layout: &PackedLayout) -> Shape {
    with_last(g, layout.cols)
}

/// Output shape of a row lookup: `ids[n] → [n, cols]`.
fn rows_shape(ids: &Shape, layout: &PackedLayout) -> Shape {
    Shape::new([ids.num_elements(), layout.cols])
}

fn dequantized_shape(layout: &PackedLayout) -> Shape {
    Shape::new([layout.rows, layout.cols])
}

fn with_last(shape: &Shape, last: usize) -> Shape {
    let mut dims: Vec<usize> = shape.iter().copied().collect();
    if let Some(d) = dims.last_mut() {
        *d = last;
    }
    Shape::from(dims)
}

/// The primitive operations on packed weights. Activations are f32.
#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait PackedOps: Backend {
    /// `x[.., cols] · Wᵀ → [.., rows]`.
    #[fusion(dtype = x, shape = linear_shape(x, layout))]
    fn packed_linear(
        x: FloatTensor<Self>,
        blocks: IntTensor<Self>,
        layout: PackedLayout,
    ) -> FloatTensor<Self>;

    /// `g[.., rows] · W → [.., cols]`: the gradient of [`PackedOps::packed_linear`] with
    /// respect to its input.
    #[fusion(dtype = g, shape = transposed_shape(g, layout))]
    fn packed_linear_transposed(
        g: FloatTensor<Self>,
        blocks: IntTensor<Self>,
        layout: PackedLayout,
    ) -> FloatTensor<Self>;

    /// `x · Wᵀ` as [`PackedOps::packed_linear`], for a frozen weight in training: its
    /// input gradient `g · W` is computed as `packed_linear(g, Wᵀ)` from `blocks_t`, the
    /// transposed matrix packed on its own (`[cols, rows]`, e.g. in 8-bit blocks that take
    /// the integer kernels) instead of through [`PackedOps::packed_linear_transposed`].
    #[fusion(default)]
    fn packed_linear_with_transpose(
        x: FloatTensor<Self>,
        blocks: IntTensor<Self>,
        layout: PackedLayout,
        blocks_t: IntTensor<Self>,
        layout_t: PackedLayout,
    ) -> FloatTensor<Self> {
        let _ = (blocks_t, layout_t);
        Self::packed_linear(x, blocks, layout)
    }

    /// Two [`PackedOps::packed_linear`]s of one input (gate/up), as one product where the
    /// backend has a fused one (the CPU, for a decode step's few rows).
    #[fusion(default)]
    fn packed_linear_pair(
        x: FloatTensor<Self>,
        blocks_a: IntTensor<Self>,
        layout_a: PackedLayout,
        blocks_b: IntTensor<Self>,
        layout_b: PackedLayout,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        (
            Self::packed_linear(x.clone(), blocks_a, layout_a),
            Self::packed_linear(x, blocks_b, layout_b),
        )
    }

    /// Three [`PackedOps::packed_linear`]s of one input (q/k/v), as
    /// [`PackedOps::packed_linear_pair`].
    #[fusion(default)]
    fn packed_linear_triple(
        x: FloatTensor<Self>,
        blocks_a: IntTensor<Self>,
        layout_a: PackedLayout,
        blocks_b: IntTensor<Self>,
        layout_b: PackedLayout,
        blocks_c: IntTensor<Self>,
        layout_c: PackedLayout,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        (
            Self::packed_linear(x.clone(), blocks_a, layout_a),
            Self::packed_linear(x.clone(), blocks_b, layout_b),
            Self::packed_linear(x, blocks_c, layout_c),
        )
    }

    /// The mean negative log-likelihood of `targets` (`[n]`) under `logits` (`[n, v]`):
    /// `mean(logsumexp(row) − row[target])`, `[1]`. One pass a row on the CPU, where
    /// log-softmax and a gather would fill several `[n, v]` temporaries.
    #[fusion(default)]
    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        cross_entropy_generic::<Self>(logits, targets)
    }

    /// The gradient of [`PackedOps::cross_entropy`] with respect to `logits`, times `grad`
    /// (`[1]`): `(softmax(row) − onehot(target)) · grad / n`.
    #[fusion(default)]
    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        cross_entropy_backward_generic::<Self>(logits, targets, grad)
    }

    /// `silu(gate) · up`, elementwise (the gated feed-forward activation, SwiGLU). Its
    /// backward pass keeps only `gate` and `up`.
    #[fusion(default)]
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        swiglu_generic::<Self>(gate, up)
    }

    /// The gradients of [`PackedOps::swiglu`] with respect to `gate` and `up`.
    #[fusion(default)]
    fn swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        swiglu_backward_generic::<Self>(gate, up, grad)
    }

    /// `x / sqrt(mean(x²) + eps) · weight` over the last axis (RMSNorm; `weight` is
    /// `[last]`). One pass a row on the CPU; elsewhere (and under autodiff, which
    /// differentiates the composition) the backend's own ops.
    #[fusion(default)]
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        rms_norm_generic::<Self>(x, weight, eps)
    }

    /// The rotary position embedding of `x` (`[b, heads, seq, d]`) with `cos` and `sin`
    /// (`[1, 1, seq, d]`): `x · cos + rotate_half(x) · sin`, where `rotate_half(x)` is
    /// `[-x₂, x₁]` of the two halves of the last axis. One pass on the CPU; elsewhere the
    /// backend's own ops.
    #[fusion(default)]
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        rope_generic::<Self>(x, cos, sin)
    }

    /// Rows `ids` of `W`, dequantized: `[n] → [n, cols]` (an embedding lookup).
    #[fusion(dtype = DType::F32, shape = rows_shape(ids, layout))]
    fn packed_rows(
        ids: IntTensor<Self>,
        blocks: IntTensor<Self>,
        layout: PackedLayout,
    ) -> FloatTensor<Self>;

    /// The whole matrix in f32, `[rows, cols]` (tests and reference paths).
    #[fusion(dtype = DType::F32, shape = dequantized_shape(layout))]
    fn packed_dequantize(blocks: IntTensor<Self>, layout: PackedLayout) -> FloatTensor<Self>;

    /// Writes `k` and `v` (`[1, kv_heads, s, d]`) at positions `start..start + s` of the
    /// caches (`[1, kv_heads, capacity, d]`) and returns the causal attention of `q`
    /// (`[1, heads, s, d]`, at positions `start..`) over positions `0..start + s`, with the
    /// caches. Query heads share key/value heads in groups.
    #[fusion(default)]
    fn cached_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        k_cache: FloatTensor<Self>,
        v_cache: FloatTensor<Self>,
        start: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        cached_attention_generic::<Self>(q, k, v, k_cache, v_cache, start)
    }
}

fn dims4(shape: &Shape) -> [usize; 4] {
    <[usize; 4]>::try_from(shape.iter().copied().collect::<Vec<_>>().as_slice())
        .unwrap_or_else(|_| panic!("attention tensors are 4-D, got {shape:?}"))
}

fn dims2(shape: &Shape) -> [usize; 2] {
    <[usize; 2]>::try_from(shape.iter().copied().collect::<Vec<_>>().as_slice())
        .unwrap_or_else(|_| panic!("logits are 2-D, got {shape:?}"))
}

/// Each row's `(max, logsumexp)`, `[n, 1]` each, from the backend's own ops.
fn logsumexp_generic<B: Backend>(logits: FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>) {
    let shape = logits.shape();
    let max = B::float_max_dim(logits.clone(), 1);
    let shifted = B::float_sub(logits, B::float_expand(max.clone(), shape));
    let sum = B::float_sum_dim(B::float_exp(shifted), 1);
    (max.clone(), B::float_add(B::float_log(sum), max))
}

/// [`PackedOps::cross_entropy`] from the backend's own ops (every backend; the CPU has a
/// fused one).
fn cross_entropy_generic<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
) -> FloatTensor<B> {
    let [n, _] = dims2(&logits.shape());
    let targets = B::int_reshape(targets, Shape::new([n, 1]));
    let picked = B::float_gather(1, logits.clone(), targets);
    let (_, lse) = logsumexp_generic::<B>(logits);
    B::float_reshape(B::float_mean(B::float_sub(lse, picked)), Shape::new([1]))
}

/// [`PackedOps::cross_entropy_backward`] from the backend's own ops.
fn cross_entropy_backward_generic<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let shape = logits.shape();
    let [n, _] = dims2(&shape);
    let device = logits.device();
    let (_, lse) = logsumexp_generic::<B>(logits.clone());
    let softmax = B::float_exp(B::float_sub(logits, B::float_expand(lse, shape.clone())));
    let targets = B::int_reshape(targets, Shape::new([n, 1]));
    let minus_one = B::float_neg(B::float_ones(Shape::new([n, 1]), &device, FloatDType::F32));
    let d = B::float_scatter(1, softmax, targets, minus_one, IndexingUpdateOp::Add);
    let scale = B::float_div_scalar(
        B::float_reshape(grad, Shape::new([1, 1])),
        Scalar::Float(n as f64),
    );
    B::float_mul(d, B::float_expand(scale, shape))
}

/// [`PackedOps::swiglu`] from the backend's own ops.
fn swiglu_generic<B: Backend>(gate: FloatTensor<B>, up: FloatTensor<B>) -> FloatTensor<B> {
    let silu = B::float_mul(gate.clone(), B::sigmoid(gate));
    B::float_mul(silu, up)
}

/// [`PackedOps::swiglu_backward`] from the backend's own ops.
fn swiglu_backward_generic<B: Backend>(
    gate: FloatTensor<B>,
    up: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let s = B::sigmoid(gate.clone());
    let silu = B::float_mul(gate.clone(), s.clone());
    let d_up = B::float_mul(grad.clone(), silu);
    // d silu / d gate = σ · (1 + gate · (1 − σ))
    let one_minus = B::float_add_scalar(B::float_neg(s.clone()), Scalar::Float(1.0));
    let slope = B::float_mul(
        s,
        B::float_add_scalar(B::float_mul(gate, one_minus), Scalar::Float(1.0)),
    );
    let d_gate = B::float_mul(B::float_mul(grad, up), slope);
    (d_gate, d_up)
}

/// [`PackedOps::rms_norm`] from the backend's own ops.
fn rms_norm_generic<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    eps: f64,
) -> FloatTensor<B> {
    let shape = x.shape();
    let last = shape.num_dims() - 1;
    let mean = B::float_mean_dim(B::float_mul(x.clone(), x.clone()), last);
    let rms = B::float_sqrt(B::float_add_scalar(mean, Scalar::Float(eps)));
    let normed = B::float_div(x, B::float_expand(rms, shape.clone()));
    let weight_shape: Shape = (0..=last)
        .map(|i| if i == last { shape[last] } else { 1 })
        .collect();
    let weight = B::float_expand(B::float_reshape(weight, weight_shape), shape);
    B::float_mul(normed, weight)
}

/// [`PackedOps::rope`] from the backend's own ops.
fn rope_generic<B: Backend>(
    x: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
) -> FloatTensor<B> {
    let shape = x.shape();
    let [b, h, s, d] = dims4(&shape);
    let half = d / 2;
    let part = |x: FloatTensor<B>, lo: usize, hi: usize| {
        B::float_slice(
            x,
            &[
                Slice::from(0..b),
                Slice::from(0..h),
                Slice::from(0..s),
                Slice::from(lo..hi),
            ],
        )
    };
    let x2 = B::float_neg(part(x.clone(), half, d));
    let rotated = B::float_cat(vec![x2, part(x.clone(), 0, half)], 3);
    let cos = B::float_expand(cos, shape.clone());
    let sin = B::float_expand(sin, shape);
    B::float_add(B::float_mul(x, cos), B::float_mul(rotated, sin))
}

/// [`PackedOps::cached_attention`] from the backend's own slice-assign, slice and
/// attention (every backend; the CPU has a faster one).
fn cached_attention_generic<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    k_cache: FloatTensor<B>,
    v_cache: FloatTensor<B>,
    start: usize,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let [_, kv_heads, s, d] = dims4(&k.shape());
    let heads = dims4(&q.shape())[1];
    let end = start + s;
    let at = |len: Slice| {
        [
            Slice::from(0..1),
            Slice::from(0..kv_heads),
            len,
            Slice::from(0..d),
        ]
    };
    // a cache kept in f16 (see `kv_cache_dtype`) takes the new rows rounded, and is read
    // back widened to the queries' f32
    let f16_cache = k_cache.dtype() == DType::F16;
    let to = |t: FloatTensor<B>, dtype: FloatDType| {
        if f16_cache {
            B::float_cast(t, dtype)
        } else {
            t
        }
    };
    let k_cache = B::float_slice_assign(
        k_cache,
        &at(Slice::from(start..end)),
        to(k, FloatDType::F16),
    );
    let v_cache = B::float_slice_assign(
        v_cache,
        &at(Slice::from(start..end)),
        to(v, FloatDType::F16),
    );
    let k_all = to(
        B::float_slice(k_cache.clone(), &at(Slice::from(0..end))),
        FloatDType::F32,
    );
    let v_all = to(
        B::float_slice(v_cache.clone(), &at(Slice::from(0..end))),
        FloatDType::F32,
    );
    let group = heads / kv_heads;
    let out = if s == 1 {
        // one query per head: the group folds into the query axis, K/V are not repeated
        let q = B::float_reshape(q, Shape::new([1, kv_heads, group, d]));
        let out = B::attention(
            q,
            k_all,
            v_all,
            None,
            None,
            AttentionModuleOptions::default(),
        );
        B::float_reshape(out, Shape::new([1, heads, 1, d]))
    } else {
        let repeat = |t: FloatTensor<B>| {
            if group == 1 {
                return t;
            }
            let t = B::float_reshape(t, Shape::new([1, kv_heads, 1, end, d]));
            let t = B::float_expand(t, Shape::new([1, kv_heads, group, end, d]));
            B::float_reshape(t, Shape::new([1, heads, end, d]))
        };
        let options = AttentionModuleOptions {
            is_causal: true,
            ..Default::default()
        };
        B::attention(q, repeat(k_all), repeat(v_all), None, None, options)
    };
    (out, k_cache, v_cache)
}

/// The causal attention of `q` over all `end` positions of `k`/`v` (`[1, heads, _, d]`,
/// same heads), the reference for [`PackedOps::cached_attention`] in tests.
pub fn attention_reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let options = AttentionModuleOptions {
        is_causal: true,
        ..Default::default()
    };
    burn::tensor::module::attention(q, k, v, None, None, options)
}

/// See [`PackedOps::cached_attention`].
pub fn cached_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    k_cache: Tensor<4>,
    v_cache: Tensor<4>,
    start: usize,
) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    let (out, k_cache, v_cache) = Dispatch::cached_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        k_cache.into_dispatch(),
        v_cache.into_dispatch(),
        start,
    );
    (
        Tensor::from_dispatch(out),
        Tensor::from_dispatch(k_cache),
        Tensor::from_dispatch(v_cache),
    )
}

/// Whether `device` is the CPU (burn's flex backend), whose ops here run this crate's
/// [`cpu`] kernels.
pub fn on_cpu(device: &burn::tensor::Device) -> bool {
    *device == burn::tensor::Device::flex()
}

/// The dtype a KV cache on `device` is kept in, for [`cached_attention`]: f16 on the CPU,
/// whose attention reads it in place, widening as it goes (see [`cpu::attention`]); f32 on
/// other devices, whose attention is the generic one.
pub fn kv_cache_dtype(device: &burn::tensor::Device) -> DType {
    if on_cpu(device) {
        DType::F16
    } else {
        DType::F32
    }
}

/// See [`PackedOps::cross_entropy`]: the mean negative log-likelihood of `targets` (`[n]`)
/// under `logits` (`[n, v]`), differentiable with respect to the logits.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let logits = f32_input(logits);
    Tensor::from_dispatch(Dispatch::cross_entropy(
        logits.into_dispatch(),
        targets.into_dispatch(),
    ))
}

/// See [`PackedOps::swiglu`]: `silu(gate) · up`, differentiable in both.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    assert_eq!(gate.dims(), up.dims(), "gate and up have one shape");
    Tensor::from_dispatch(Dispatch::swiglu(
        f32_input(gate).into_dispatch(),
        f32_input(up).into_dispatch(),
    ))
}

/// See [`PackedOps::rms_norm`]: RMSNorm over the last axis, differentiable in `x`.
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    assert_eq!(x.dims()[D - 1], weight.dims()[0], "one weight a feature");
    Tensor::from_dispatch(Dispatch::rms_norm(
        f32_input(x).into_dispatch(),
        f32_input(weight).into_dispatch(),
        eps,
    ))
}

/// See [`PackedOps::rope`]: `x` is `[b, heads, seq, d]`, `cos`/`sin` `[1, 1, seq, d]`.
pub fn rope(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    let [_, _, s, d] = x.dims();
    assert_eq!(cos.dims(), [1, 1, s, d], "cos is [1, 1, seq, head_dim]");
    assert_eq!(sin.dims(), [1, 1, s, d], "sin is [1, 1, seq, head_dim]");
    Tensor::from_dispatch(Dispatch::rope(
        f32_input(x).into_dispatch(),
        f32_input(cos).into_dispatch(),
        f32_input(sin).into_dispatch(),
    ))
}

/// See [`PackedOps::packed_linear_with_transpose`].
pub fn packed_linear_with_transpose<const D: usize>(
    x: Tensor<D>,
    blocks: &Tensor<1, Int>,
    layout: PackedLayout,
    blocks_t: &Tensor<1, Int>,
    layout_t: PackedLayout,
) -> Tensor<D> {
    assert_eq!(
        (layout_t.rows, layout_t.cols),
        (layout.cols, layout.rows),
        "the transposed matrix is [cols, rows]"
    );
    let x = f32_input(x);
    Tensor::from_dispatch(Dispatch::packed_linear_with_transpose(
        x.into_dispatch(),
        blocks.clone().into_dispatch(),
        layout,
        blocks_t.clone().into_dispatch(),
        layout_t,
    ))
}

/// `x[.., cols] · Wᵀ → [.., rows]` for a packed weight.
pub fn packed_linear<const D: usize>(
    x: Tensor<D>,
    blocks: &Tensor<1, Int>,
    layout: PackedLayout,
) -> Tensor<D> {
    let x = f32_input(x);
    Tensor::from_dispatch(Dispatch::packed_linear(
        x.into_dispatch(),
        blocks.clone().into_dispatch(),
        layout,
    ))
}

/// `x` in f32, the activations' dtype of every packed op.
fn f32_input<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() == DType::F32 {
        x
    } else {
        x.cast(FloatDType::F32)
    }
}

/// `x · Wᵀ` for two packed weights of one input ([`PackedOps::packed_linear_pair`]).
pub fn packed_linear_pair<const D: usize>(
    x: Tensor<D>,
    [(a, la), (b, lb)]: [(&Tensor<1, Int>, PackedLayout); 2],
) -> [Tensor<D>; 2] {
    let (ya, yb) = Dispatch::packed_linear_pair(
        f32_input(x).into_dispatch(),
        a.clone().into_dispatch(),
        la,
        b.clone().into_dispatch(),
        lb,
    );
    [Tensor::from_dispatch(ya), Tensor::from_dispatch(yb)]
}

/// `x · Wᵀ` for three packed weights of one input ([`PackedOps::packed_linear_triple`]).
pub fn packed_linear_triple<const D: usize>(
    x: Tensor<D>,
    [(a, la), (b, lb), (c, lc)]: [(&Tensor<1, Int>, PackedLayout); 3],
) -> [Tensor<D>; 3] {
    let (ya, yb, yc) = Dispatch::packed_linear_triple(
        f32_input(x).into_dispatch(),
        a.clone().into_dispatch(),
        la,
        b.clone().into_dispatch(),
        lb,
        c.clone().into_dispatch(),
        lc,
    );
    [
        Tensor::from_dispatch(ya),
        Tensor::from_dispatch(yb),
        Tensor::from_dispatch(yc),
    ]
}

/// Rows `ids` (`[n]`) of a packed weight, dequantized to `[n, cols]`.
pub fn packed_rows(
    ids: Tensor<1, Int>,
    blocks: &Tensor<1, Int>,
    layout: PackedLayout,
) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::packed_rows(
        ids.into_dispatch(),
        blocks.clone().into_dispatch(),
        layout,
    ))
}

/// A packed weight dequantized to `[rows, cols]` f32.
pub fn packed_dequantize(blocks: &Tensor<1, Int>, layout: PackedLayout) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::packed_dequantize(
        blocks.clone().into_dispatch(),
        layout,
    ))
}

// --- flex (CPU) --------------------------------------------------------------------------

/// The bytes of a packed weight on flex.
fn flex_bytes(blocks: &FlexTensor, layout: &PackedLayout) -> PackedMatrix<'static> {
    let len = layout.byte_len().expect("packed layout size");
    let bytes = blocks.bytes();
    let (start, _) = blocks
        .layout()
        .contiguous_offsets()
        .expect("packed weights are contiguous");
    let elem = match blocks.dtype() {
        DType::U32 | DType::I32 => 4,
        DType::U8 | DType::I8 => 1,
        other => panic!("packed weights are stored as u32 words, not {other:?}"),
    };
    let bytes = &bytes[start * elem..];
    // SAFETY: the storage is reference-counted by `blocks`, which the caller keeps alive
    // for the whole product; the 'static only spares threading the lifetime through.
    let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) };
    debug_assert!(bytes.len() >= len);
    PackedMatrix::new(layout.ty, layout.rows, layout.cols, bytes)
        .unwrap_or_else(|e| panic!("packed weight does not match its layout: {e}"))
}

/// An f32 view of a flex float tensor (cast and made contiguous where needed).
fn flex_f32(x: FlexTensor) -> FlexTensor {
    let x = if x.dtype() == DType::F32 {
        x
    } else {
        <Flex as burn::backend::ops::FloatTensorOps<Flex>>::float_cast(x, FloatDType::F32)
    };
    if x.layout().contiguous_offsets().is_some() {
        x
    } else {
        x.to_contiguous()
    }
}

fn flex_slice(x: &FlexTensor) -> &[f32] {
    let (start, end) = x.layout().contiguous_offsets().expect("contiguous");
    &x.storage::<f32>()[start..end]
}

fn flex_out(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// Token ids (any integer dtype) as indices, each checked to be below `limit`.
fn flex_token_ids(ids: FlexTensor, limit: usize) -> Vec<usize> {
    let ids = ids.to_contiguous();
    let ids: Vec<usize> = match ids.dtype() {
        DType::I64 => flex_ints::<i64>(&ids),
        DType::I32 => flex_ints::<i32>(&ids),
        DType::U32 => flex_ints::<u32>(&ids),
        other => panic!("token ids as {other:?}"),
    };
    if let Some(&bad) = ids.iter().find(|&&i| i >= limit) {
        panic!("token id {bad} of a {limit}-entry vocabulary");
    }
    ids
}

/// Several packed products of one input on the CPU ([`cpu::matmul_many`]).
fn flex_linear_many<const N: usize>(
    x: FlexTensor,
    weights: [(FlexTensor, PackedLayout); N],
) -> [FlexTensor; N] {
    let x = flex_f32(x);
    let input = flex_slice(&x);
    let cols = weights[0].1.cols;
    let m = input.len() / cols.max(1);
    let ws: Vec<PackedMatrix<'_>> = weights
        .iter()
        .map(|(blocks, layout)| {
            assert_eq!(layout.cols, cols, "one input for every matrix");
            flex_bytes(blocks, layout)
        })
        .collect();
    let mut ys: Vec<Vec<f32>> = ws.iter().map(|w| vec![0.0f32; m * w.rows]).collect();
    let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(|y| y.as_mut_slice()).collect();
    cpu::matmul_many(input, m, &ws, &mut outs);
    let mut ys = ys.into_iter();
    std::array::from_fn(|j| {
        flex_out(
            ys.next().expect("one output a matrix"),
            linear_shape(&x.shape(), &weights[j].1),
        )
    })
}

impl PackedOps for Flex {
    fn packed_linear(x: FlexTensor, blocks: FlexTensor, layout: PackedLayout) -> FlexTensor {
        let x = flex_f32(x);
        let shape = linear_shape(&x.shape(), &layout);
        let input = flex_slice(&x);
        let m = input.len() / layout.cols.max(1);
        let w = flex_bytes(&blocks, &layout);
        let mut y = vec![0.0f32; m * layout.rows];
        cpu::matmul(input, m, &w, &mut y);
        flex_out(y, shape)
    }

    fn packed_linear_pair(
        x: FlexTensor,
        blocks_a: FlexTensor,
        layout_a: PackedLayout,
        blocks_b: FlexTensor,
        layout_b: PackedLayout,
    ) -> (FlexTensor, FlexTensor) {
        let [a, b] = flex_linear_many(x, [(blocks_a, layout_a), (blocks_b, layout_b)]);
        (a, b)
    }

    fn packed_linear_triple(
        x: FlexTensor,
        blocks_a: FlexTensor,
        layout_a: PackedLayout,
        blocks_b: FlexTensor,
        layout_b: PackedLayout,
        blocks_c: FlexTensor,
        layout_c: PackedLayout,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [a, b, c] = flex_linear_many(
            x,
            [
                (blocks_a, layout_a),
                (blocks_b, layout_b),
                (blocks_c, layout_c),
            ],
        );
        (a, b, c)
    }

    fn packed_linear_transposed(
        g: FlexTensor,
        blocks: FlexTensor,
        layout: PackedLayout,
    ) -> FlexTensor {
        let g = flex_f32(g);
        let shape = transposed_shape(&g.shape(), &layout);
        let grad = flex_slice(&g);
        let m = grad.len() / layout.rows.max(1);
        let w = flex_bytes(&blocks, &layout);
        let mut y = vec![0.0f32; m * layout.cols];
        cpu::matmul_transposed(grad, m, &w, &mut y);
        flex_out(y, shape)
    }

    fn swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        let (gate, up) = (flex_f32(gate), flex_f32(up));
        let shape = gate.shape();
        let mut out = vec![0.0f32; shape.num_elements()];
        cpu::gated::swiglu(flex_slice(&gate), flex_slice(&up), &mut out);
        flex_out(out, shape)
    }

    fn swiglu_backward(
        gate: FlexTensor,
        up: FlexTensor,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let (gate, up, grad) = (flex_f32(gate), flex_f32(up), flex_f32(grad));
        let shape = gate.shape();
        let n = shape.num_elements();
        let (mut d_gate, mut d_up) = (vec![0.0f32; n], vec![0.0f32; n]);
        cpu::gated::swiglu_backward(
            flex_slice(&gate),
            flex_slice(&up),
            flex_slice(&grad),
            &mut d_gate,
            &mut d_up,
        );
        (flex_out(d_gate, shape.clone()), flex_out(d_up, shape))
    }

    fn rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        let (x, weight) = (flex_f32(x), flex_f32(weight));
        let shape = x.shape();
        let mut out = vec![0.0f32; shape.num_elements()];
        cpu::norm::rms_norm(flex_slice(&x), flex_slice(&weight), eps as f32, &mut out);
        flex_out(out, shape)
    }

    fn rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
        let (x, cos, sin) = (flex_f32(x), flex_f32(cos), flex_f32(sin));
        let shape = x.shape();
        let seq = dims4(&shape)[2];
        let mut out = vec![0.0f32; shape.num_elements()];
        cpu::norm::rope(
            flex_slice(&x),
            seq,
            flex_slice(&cos),
            flex_slice(&sin),
            &mut out,
        );
        flex_out(out, shape)
    }

    fn cross_entropy(logits: FlexTensor, targets: FlexTensor) -> FlexTensor {
        let logits = flex_f32(logits);
        let [n, v] = dims2(&logits.shape());
        let targets = flex_token_ids(targets, v);
        let sum = cpu::loss::cross_entropy_sum(flex_slice(&logits), v, &targets);
        flex_out(vec![(sum / n.max(1) as f64) as f32], Shape::new([1]))
    }

    fn cross_entropy_backward(
        logits: FlexTensor,
        targets: FlexTensor,
        grad: FlexTensor,
    ) -> FlexTensor {
        let logits = flex_f32(logits);
        let shape = logits.shape();
        let [n, v] = dims2(&shape);
        let targets = flex_token_ids(targets, v);
        let grad = flex_f32(grad);
        let scale = flex_slice(&grad)[0] / n.max(1) as f32;
        let mut out = vec![0.0f32; n * v];
        cpu::loss::cross_entropy_grad(flex_slice(&logits), v, &targets, scale, &mut out);
        flex_out(out, shape)
    }

    fn packed_rows(ids: FlexTensor, blocks: FlexTensor, layout: PackedLayout) -> FlexTensor {
        let ids = flex_token_ids(ids, layout.rows);
        let w = flex_bytes(&blocks, &layout);
        let mut out = vec![0.0f32; ids.len() * layout.cols];
        cpu::gather_rows(&w, &ids, &mut out);
        flex_out(out, Shape::new([ids.len(), layout.cols]))
    }

    fn packed_dequantize(blocks: FlexTensor, layout: PackedLayout) -> FlexTensor {
        let w = flex_bytes(&blocks, &layout);
        let mut out = vec![0.0f32; layout.rows * layout.cols];
        cpu::dequantize(&w, &mut out);
        flex_out(out, dequantized_shape(&layout))
    }

    fn cached_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        k_cache: FlexTensor,
        v_cache: FlexTensor,
        start: usize,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [_, heads, s, d] = dims4(&q.shape());
        let [_, kv_heads, capacity, _] = dims4(&k_cache.shape());
        // the caches are whole f16 tensors (see `kv_cache_dtype`); anything else takes the
        // generic path
        let whole = |t: &FlexTensor| {
            t.dtype() == DType::F16
                && t.layout().contiguous_offsets() == Some((0, t.layout().num_elements()))
        };
        if !whole(&k_cache) || !whole(&v_cache) {
            return cached_attention_generic::<Flex>(q, k, v, k_cache, v_cache, start);
        }
        let (q, k, v) = (flex_f32(q), flex_f32(k), flex_f32(v));
        let (mut k_cache, mut v_cache) = (k_cache, v_cache);
        // written in place, rounded to f16 (a copy only if someone else still holds the cache)
        for (cache, new) in [(&mut k_cache, &k), (&mut v_cache, &v)] {
            let new = flex_slice(new);
            let dst = cache.storage_mut::<half::f16>();
            for g in 0..kv_heads {
                let at = (g * capacity + start) * d;
                half::slice::HalfFloatSliceExt::convert_from_f32_slice(
                    &mut dst[at..at + s * d],
                    &new[g * s * d..(g + 1) * s * d],
                );
            }
        }
        let shape = cpu::attention::AttentionShape {
            heads,
            kv_heads,
            s,
            head_dim: d,
            capacity,
            start,
        };
        let mut out = vec![0.0f32; heads * s * d];
        cpu::attention::attend(
            cpu::Isa::detect(),
            shape,
            flex_slice(&q),
            k_cache.storage::<half::f16>(),
            v_cache.storage::<half::f16>(),
            1.0 / (d as f32).sqrt(),
            &mut out,
        );
        (
            flex_out(out, Shape::new([1, heads, s, d])),
            k_cache,
            v_cache,
        )
    }
}

fn flex_ints<E>(t: &FlexTensor) -> Vec<usize>
where
    E: burn::tensor::Element + bytemuck::Pod + TryInto<usize>,
{
    let (start, end) = t.layout().contiguous_offsets().expect("contiguous");
    t.storage::<E>()[start..end]
        .iter()
        .map(|&v| v.try_into().unwrap_or(usize::MAX))
        .collect()
}

// --- autodiff ----------------------------------------------------------------------------

/// How the backward pass of `y = x · Wᵀ` (with `W` frozen) gets `dx = dy · W`.
#[derive(Debug, Clone)]
enum InputGradient<B: Backend> {
    /// From the forward blocks, multiplied transposed (`packed_linear_transposed`).
    FromWeight(IntTensor<B>, PackedLayout),
    /// From `Wᵀ` packed beside the weight: the forward kernel on the transposed matrix.
    FromTranspose(IntTensor<B>, PackedLayout),
}

#[derive(Debug)]
struct PackedLinearBackward;

impl<B: PackedOps> Backward<B, 1> for PackedLinearBackward {
    type State = InputGradient<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let Some(node) = parent else { return };
        let dx = match ops.state {
            InputGradient::FromWeight(blocks, layout) => {
                B::packed_linear_transposed(grad, blocks, layout)
            }
            InputGradient::FromTranspose(blocks_t, layout_t) => {
                B::packed_linear(grad, blocks_t, layout_t)
            }
        };
        grads.register::<B>(node.id, dx);
    }
}

/// `x · Wᵀ` on the inner backend, tracked so that its input gradient comes from `gradient`.
fn tracked_packed_linear<B: PackedOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    blocks: IntTensor<B>,
    layout: PackedLayout,
    gradient: InputGradient<B>,
) -> FloatTensor<Autodiff<B, C>> {
    let node = x.node();
    let out = B::packed_linear(x.into_primitive(), blocks, layout);
    match PackedLinearBackward
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(gradient, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// The backward pass of the mean cross-entropy: `d logits = (softmax − onehot) · g / n`.
#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: PackedOps> Backward<B, 1> for CrossEntropyBackward {
    type State = (FloatTensor<B>, IntTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let Some(node) = parent else { return };
        let (logits, targets) = ops.state;
        grads.register::<B>(node.id, B::cross_entropy_backward(logits, targets, grad));
    }
}

/// The backward pass of `silu(gate) · up`, from the two inputs it keeps.
#[derive(Debug)]
struct SwigluBackward;

impl<B: PackedOps> Backward<B, 2> for SwigluBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [gate_node, up_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (gate, up) = ops.state;
        let (d_gate, d_up) = B::swiglu_backward(gate, up, grad);
        if let Some(node) = gate_node {
            grads.register::<B>(node.id, d_gate);
        }
        if let Some(node) = up_node {
            grads.register::<B>(node.id, d_up);
        }
    }
}

impl<B: PackedOps, C: CheckpointStrategy> PackedOps for Autodiff<B, C> {
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [gate.node(), up.node()];
        let (gate, up) = (gate.into_primitive(), up.into_primitive());
        match SwigluBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::swiglu(gate.clone(), up.clone());
                prep.finish((gate, up), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::swiglu(gate, up)),
        }
    }

    fn swiglu_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        // only ever called inside a backward pass, on the inner backend
        let (d_gate, d_up) = B::swiglu_backward(
            gate.into_primitive(),
            up.into_primitive(),
            grad.into_primitive(),
        );
        (Self::from_inner(d_gate), Self::from_inner(d_up))
    }

    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        let node = logits.node();
        let logits = logits.into_primitive();
        match CrossEntropyBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let loss = B::cross_entropy(logits.clone(), targets.clone());
                prep.finish((logits, targets), loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cross_entropy(logits, targets)),
        }
    }

    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // only ever called inside a backward pass, on the inner backend
        Self::from_inner(B::cross_entropy_backward(
            logits.into_primitive(),
            targets,
            grad.into_primitive(),
        ))
    }

    fn packed_linear(
        x: FloatTensor<Self>,
        blocks: IntTensor<Self>,
        layout: PackedLayout,
    ) -> FloatTensor<Self> {
        let gradient = InputGradient::FromWeight(blocks.clone(), layout);
        tracked_packed_linear::<B, C>(x, blocks, layout, gradient)
    }

    fn packed_linear_with_transpose(
        x: FloatTensor<Self>,
        blocks: IntTensor<Self>,
        layout: PackedLayout,
        blocks_t: IntTensor<Self>,
        layout_t: PackedLayout,
    ) -> FloatTensor<Self> {
        let gradient = InputGradient::FromTranspose(blocks_t, layout_t);
        tracked_packed_linear::<B, C>(x, blocks, layout, gradient)
    }

    fn packed_linear_transposed(
        g: FloatTensor<Self>,
        blocks: IntTensor<Self>,
        layout: PackedLayout,
    ) -> FloatTensor<Self> {
        // only ever called inside a backward pass, on the inner backend
        Self::from_inner(B::packed_linear_transposed(
            g.into_primitive(),
            blocks,
            layout,
        ))
    }

    fn packed_rows(
        ids: IntTensor<Self>,
        blocks: IntTensor<Self>,
        layout: PackedLayout,
    ) -> FloatTensor<Self> {
        // a frozen table: the rows are constants of the graph
        Self::from_inner(B::packed_rows(ids, blocks, layout))
    }

    fn packed_dequantize(blocks: IntTensor<Self>, layout: PackedLayout) -> FloatTensor<Self> {
        Self::from_inner(B::packed_dequantize(blocks, layout))
    }
}
