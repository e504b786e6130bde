//! Building blocks shared by the architectures: linear layers, norms, embeddings, RoPE and
//! attention over the KV cache.

use burn::module::{Module, Param, ParamId};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::softmax;
use burn::tensor::module::{attention, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorCreationOptions, TensorData};
use penwright_kernels::GgmlType;
use penwright_kernels::ops::{
    PackedLayout, packed_dequantize, packed_linear, packed_linear_pair, packed_linear_triple,
    packed_linear_with_transpose, packed_rows,
};

use crate::Result;
use crate::weights::{HostTensor, PackedHost, WeightSource};

/// Uploads a host tensor to the device.
pub fn upload<const D: usize>(t: HostTensor, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

/// A weight matrix `[out, in]` kept on the device in its file's format (GGUF blocks, or
/// f32/f16/bf16) and multiplied in it by the kernels of `penwright-kernels`; frozen.
#[derive(Module, Debug)]
pub struct PackedWeight {
    /// The matrix's bytes as `u32` words.
    pub blocks: Tensor<1, Int>,
    #[module(skip)]
    pub layout: PackedLayout,
    /// `Wᵀ` packed on its own while training, for the input gradient (see
    /// [`PackedWeight::keep_transposed`]).
    pub transposed: Option<Tensor<1, Int>>,
    #[module(skip)]
    pub transposed_layout: Option<PackedLayout>,
}

impl PackedWeight {
    pub fn upload(host: PackedHost, device: &Device) -> Self {
        let words = host.bytes.len() / 4;
        let data = TensorData::from_bytes(host.bytes, [words], DType::U32);
        let options = TensorCreationOptions::new(device.clone()).with_dtype(DType::U32);
        PackedWeight {
            blocks: Tensor::from_data(data, options),
            layout: host.layout,
            transposed: None,
            transposed_layout: None,
        }
    }

    /// `[out, in]` as Hugging Face writes it.
    pub fn dims(&self) -> [usize; 2] {
        [self.layout.rows, self.layout.cols]
    }

    /// The blocks and what they hold.
    pub fn packed(&self) -> (&Tensor<1, Int>, PackedLayout) {
        (&self.blocks, self.layout)
    }

    /// `x[.., in] · Wᵀ`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match (&self.transposed, self.transposed_layout) {
            (Some(blocks_t), Some(layout_t)) => {
                packed_linear_with_transpose(x, &self.blocks, self.layout, blocks_t, layout_t)
            }
            _ => packed_linear(x, &self.blocks, self.layout),
        }
    }

    /// Keeps `Wᵀ` beside the matrix, requantized to 8-bit blocks, where the CPU multiplies
    /// those with its integer kernels: a training step's input gradients (`g · W`, as much
    /// work as the forward pass) then run as fast as the forward pass instead of through
    /// f32 products of dequantized tiles. Costs about one byte per weight. Returns whether
    /// it did (float weights, and a CPU without the 8-bit kernels, keep the f32 path). For
    /// weights on the CPU.
    pub fn keep_transposed(&mut self) -> bool {
        use penwright_kernels::cpu::{Isa, batched};
        let ty = GgmlType::Q8_0;
        let [rows, cols] = self.dims();
        // float weights keep their exact gradients: only a file's quantized blocks, already
        // an approximation, get an 8-bit transposed copy
        let float = matches!(
            self.layout.ty,
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16
        );
        if float || !batched::supports(Isa::detect(), ty) || !rows.is_multiple_of(ty.block_size()) {
            return false;
        }
        let w = self
            .dequantize()
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32 weights");
        let mut row = vec![0.0f32; rows];
        let mut bytes = Vec::with_capacity(cols * ty.row_bytes(rows).expect("whole blocks"));
        for c in 0..cols {
            for (r, v) in row.iter_mut().enumerate() {
                *v = w[r * cols + c];
            }
            penwright_kernels::quantize::quantize_row(ty, &row, &mut bytes);
        }
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        let host = PackedHost {
            layout: PackedLayout {
                ty,
                rows: cols,
                cols: rows,
            },
            bytes: burn::tensor::Bytes::from_bytes_vec(bytes),
        };
        let t = PackedWeight::upload(host, &self.blocks.device());
        self.transposed = Some(t.blocks);
        self.transposed_layout = Some(t.layout);
        true
    }

    /// The matrix in f32 (the reference the kernels are tested against).
    pub fn dequantize(&self) -> Tensor<2> {
        packed_dequantize(&self.blocks, self.layout)
    }

    /// A dense `[out, in]` f32, f16 or bf16 tensor packed as a weight of that type on its
    /// device (a changed or converted matrix; loading takes the file's bytes instead).
    pub fn from_tensor(t: Tensor<2>) -> Self {
        let [rows, cols] = t.dims();
        let device = t.device();
        let data = t.into_data();
        let ty = match data.dtype() {
            DType::F16 => GgmlType::F16,
            DType::BF16 => GgmlType::BF16,
            DType::F32 => GgmlType::F32,
            other => panic!("no packed weight type for {other:?}"),
        };
        let mut bytes = data.into_bytes().to_vec();
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        let host = PackedHost {
            layout: PackedLayout { ty, rows, cols },
            bytes: burn::tensor::Bytes::from_bytes_vec(bytes),
        };
        PackedWeight::upload(host, &device)
    }

    /// Keeps an f32 matrix in half precision instead (the frozen base of mixed-precision
    /// fine-tuning); quantized and half-precision weights are already compact and stay.
    pub fn store_as(&mut self, dtype: FloatDType) {
        if self.layout.ty == GgmlType::F32 && matches!(dtype, FloatDType::F16 | FloatDType::BF16) {
            let device = self.blocks.device();
            let half = self.dequantize().cast(dtype);
            *self = PackedWeight::from_tensor(half.to_device(&device));
        }
    }
}

/// `y = x Wᵀ + b` with `W` packed (`[out, in]`), plus a LoRA branch: the trainable one of
/// fine-tuning, or an adapter applied for generation.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: PackedWeight,
    pub bias: Option<Param<Tensor<1>>>,
    pub lora: Option<LoraBranch>,
}

/// A low-rank branch beside a frozen projection, in activation space:
/// `y = x Wᵀ + scale · dropout(x) A B` with `A` `[in, r]` and `B` `[r, out]` (PEFT's `lora_A`
/// and `lora_B`, transposed). The frozen `W` never gets a gradient of its own, and the dropout
/// acts on the branch's input as PEFT's `lora_dropout` does (only while training).
#[derive(Module, Debug)]
pub struct LoraBranch {
    pub a: Param<Tensor<2>>,
    pub b: Param<Tensor<2>>,
    pub scale: f64,
    pub dropout: Dropout,
}

impl LoraBranch {
    /// A trainable branch with the given factors; `id` names the parameters stably (an
    /// optimizer checkpoint finds them again by it).
    pub fn new(
        a: Tensor<2>,
        b: Tensor<2>,
        scale: f64,
        dropout: f64,
        id: impl Fn(&str) -> ParamId,
    ) -> Self {
        LoraBranch {
            a: Param::initialized(id("lora_a"), a).set_require_grad(true),
            b: Param::initialized(id("lora_b"), b).set_require_grad(true),
            scale,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        // (x A) B, never A B: the rank-r product is the narrow one, and the scale goes on it
        // rather than on the wide output (here and in the backward pass)
        let x = self.dropout.forward(x);
        linear(
            linear(x, self.a.val(), None) * self.scale,
            self.b.val(),
            None,
        )
    }
}

impl Linear {
    /// From a Hugging Face `nn.Linear` (weight `[out, in]`).
    pub fn from_hf_linear(
        w: &WeightSource,
        prefix: &str,
        shape_out_in: [usize; 2],
        bias: bool,
        device: &Device,
    ) -> Result<Self> {
        let weight = w.get_packed(&format!("{prefix}.weight"), shape_out_in, false)?;
        Self::assemble(w, prefix, weight, bias, device)
    }

    /// From a GPT-2 `Conv1D` (weight stored `[in, out]`).
    pub fn from_hf_conv1d(
        w: &WeightSource,
        prefix: &str,
        shape_in_out: [usize; 2],
        device: &Device,
    ) -> Result<Self> {
        let [d_in, d_out] = shape_in_out;
        let weight = w.get_packed(&format!("{prefix}.weight"), [d_out, d_in], true)?;
        Self::assemble(w, prefix, weight, true, device)
    }

    fn assemble(
        w: &WeightSource,
        prefix: &str,
        weight: PackedHost,
        bias: bool,
        device: &Device,
    ) -> Result<Self> {
        let d_out = weight.layout.rows;
        let bias = if bias {
            let b = w.get_shaped(&format!("{prefix}.bias"), &[d_out])?;
            Some(Param::from_tensor(upload::<1>(b, device)))
        } else {
            None
        };
        Ok(Linear {
            weight: PackedWeight::upload(weight, device),
            bias,
            lora: None,
        })
    }

    /// An output projection tied to an embedding: the same packed table (`[vocab, dim]` is
    /// `[out, in]`), shared, not copied.
    pub fn tied(embedding: &Embedding) -> Self {
        Linear {
            weight: embedding.weight.clone(),
            bias: None,
            lora: None,
        }
    }

    /// `[in, out]`.
    pub fn dims(&self) -> [usize; 2] {
        let [out, d_in] = self.weight.dims();
        [d_in, out]
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let y = self.weight.forward(x.clone());
        self.finish(x, y)
    }

    /// Bias and low-rank branch on a product of the frozen weight.
    fn finish<const D: usize>(&self, x: Tensor<D>, mut y: Tensor<D>) -> Tensor<D> {
        if let Some(b) = &self.bias {
            y = y + b.val().unsqueeze();
        }
        match &self.lora {
            Some(branch) => y + branch.forward(x),
            None => y,
        }
    }

    /// Two projections of one input (gate/up): one fused product of the frozen weights
    /// (on the CPU), then each one's bias and branch.
    pub fn forward_pair<const D: usize>(pair: [&Linear; 2], x: Tensor<D>) -> [Tensor<D>; 2] {
        Self::forward_fused(pair, x, packed_linear_pair)
    }

    /// Three projections of one input (q/k/v), as [`Linear::forward_pair`].
    pub fn forward_triple<const D: usize>(triple: [&Linear; 3], x: Tensor<D>) -> [Tensor<D>; 3] {
        Self::forward_fused(triple, x, packed_linear_triple)
    }

    /// `product` of the frozen weights, then each one's bias and branch; while training (a
    /// transposed copy kept) each is its own [`Linear::forward`].
    fn forward_fused<const N: usize, const D: usize>(
        linears: [&Linear; N],
        x: Tensor<D>,
        product: impl FnOnce(Tensor<D>, [(&Tensor<1, Int>, PackedLayout); N]) -> [Tensor<D>; N],
    ) -> [Tensor<D>; N] {
        if linears.iter().any(|l| l.weight.transposed.is_some()) {
            return linears.map(|l| l.forward(x.clone()));
        }
        let mut ys = product(x.clone(), linears.map(|l| l.weight.packed())).into_iter();
        linears.map(|l| l.finish(x.clone(), ys.next().expect("one output a weight")))
    }

    /// Keeps the (frozen) weight in `dtype` where it is f32 (see [`PackedWeight::store_as`]).
    pub fn store_as(&mut self, dtype: FloatDType) {
        self.weight.store_as(dtype);
    }
}

/// Root-mean-square norm (Llama).
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    pub fn load(
        w: &WeightSource,
        name: &str,
        dim: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Self> {
        let t = w.get_shaped(name, &[dim])?;
        Ok(RmsNorm {
            weight: Param::from_tensor(upload::<1>(t, device)),
            eps,
        })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        penwright_kernels::ops::rms_norm(x, self.weight.val(), self.eps)
    }
}

/// Layer norm with bias (GPT-2).
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(
        w: &WeightSource,
        prefix: &str,
        dim: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Self> {
        let weight = w.get_shaped(&format!("{prefix}.weight"), &[dim])?;
        let bias = w.get_shaped(&format!("{prefix}.bias"), &[dim])?;
        Ok(LayerNorm {
            weight: Param::from_tensor(upload::<1>(weight, device)),
            bias: Param::from_tensor(upload::<1>(bias, device)),
            eps,
        })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mean = x.clone().mean_dim(D - 1);
        let centered = x - mean;
        let var = centered.clone().square().mean_dim(D - 1);
        centered / (var + self.eps).sqrt() * self.weight.val().unsqueeze()
            + self.bias.val().unsqueeze()
    }
}

/// A lookup table of row vectors, packed like the projections.
#[derive(Module, Debug)]
pub struct Embedding {
    /// `[num_embeddings, dim]`
    pub weight: PackedWeight,
}

impl Embedding {
    pub fn load(w: &WeightSource, name: &str, shape: [usize; 2], device: &Device) -> Result<Self> {
        let host = w.get_packed(name, shape, false)?;
        Ok(Embedding {
            weight: PackedWeight::upload(host, device),
        })
    }

    /// `[batch, seq]` ids → `[batch, seq, dim]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = ids.dims();
        let dim = self.weight.layout.cols;
        packed_rows(
            ids.reshape([batch * seq]),
            &self.weight.blocks,
            self.weight.layout,
        )
        .reshape([batch, seq, dim])
    }
}

/// Rotary position embedding in Hugging Face's rotate-half layout.
#[derive(Debug, Clone)]
pub struct Rope {
    /// Inverse frequencies, `head_dim / 2` of them, scaling applied.
    inv_freq: Vec<f64>,
    /// cos and sin `[positions, head_dim]` on the device last asked for, computed once (and
    /// again only for more positions or another device): a forward pass takes a view.
    table: std::sync::Arc<std::sync::Mutex<Option<RopeTable>>>,
}

#[derive(Debug)]
struct RopeTable {
    device: Device,
    positions: usize,
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    pub fn new(config: &crate::config::ModelConfig) -> Self {
        let half = config.head_dim / 2;
        let mut inv_freq: Vec<f64> = (0..half)
            .map(|i| {
                1.0 / config
                    .rope_theta
                    .powf(2.0 * i as f64 / config.head_dim as f64)
            })
            .collect();
        if let Some(factors) = &config.rope_freq_factors {
            for (f, d) in inv_freq.iter_mut().zip(factors) {
                *f /= *d as f64;
            }
        } else if let Some(s) = &config.rope_scaling {
            let old = s.original_max_position_embeddings as f64;
            let low_wavelen = old / s.low_freq_factor;
            let high_wavelen = old / s.high_freq_factor;
            for f in inv_freq.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= s.factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                }
            }
        }
        Rope {
            inv_freq,
            table: Default::default(),
        }
    }

    /// cos and sin tables `[1, 1, seq, head_dim]` for positions `start..start + seq`.
    pub fn tables(&self, start: usize, seq: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let dim = 2 * self.inv_freq.len();
        let end = start + seq;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let fits = table
            .as_ref()
            .is_some_and(|t| &t.device == device && t.positions >= end);
        if !fits {
            // whole powers of two of positions, so a growing context recomputes rarely
            let positions = end.next_power_of_two().max(256);
            let (cos, sin) = self.compute(positions);
            *table = Some(RopeTable {
                device: device.clone(),
                positions,
                cos: Tensor::from_data(TensorData::new(cos, [positions, dim]), device),
                sin: Tensor::from_data(TensorData::new(sin, [positions, dim]), device),
            });
        }
        let t = table.as_ref().expect("just filled");
        let view = |x: &Tensor<2>| x.clone().narrow(0, start, seq).reshape([1, 1, seq, dim]);
        (view(&t.cos), view(&t.sin))
    }

    fn compute(&self, positions: usize) -> (Vec<f32>, Vec<f32>) {
        let dim = 2 * self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions * dim);
        let mut sin = Vec::with_capacity(positions * dim);
        for p in 0..positions {
            for _ in 0..2 {
                for f in &self.inv_freq {
                    let angle = p as f64 * f;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        (cos, sin)
    }

    /// Applies the rotation to `[batch, heads, seq, head_dim]`.
    pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        penwright_kernels::ops::rope(x, cos.clone(), sin.clone())
    }
}

/// Scaled dot-product attention of `q` `[b, heads, s, d]` over `k`/`v` `[b, kv_heads, L, d]`
/// where the queries are the last `s` of the `L` positions (causal, bottom-right aligned).
pub fn grouped_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [b, heads, s, d] = q.dims();
    let [_, kv_heads, len, _] = k.dims();
    let group = heads / kv_heads;
    if s == 1 {
        // One query per head: fold the group into the query axis so K/V are not repeated.
        let q = q.reshape([b, kv_heads, group, d]);
        let out = attention(q, k, v, None, None, AttentionModuleOptions::default());
        return out.reshape([b, heads, 1, d]);
    }
    let (k, v) = if group > 1 {
        let repeat = |t: Tensor<4>| {
            t.unsqueeze_dim::<5>(2)
                .expand([b, kv_heads, group, len, d])
                .reshape([b, heads, len, d])
        };
        (repeat(k), repeat(v))
    } else {
        (k, v)
    };
    attention(
        q,
        k,
        v,
        None,
        None,
        AttentionModuleOptions {
            is_causal: true,
            ..Default::default()
        },
    )
}

/// Reference attention written out with matmul and softmax, for tests of the fused kernel.
pub fn attention_reference(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [_, _, s, d] = q.dims();
    let len = k.dims()[2];
    let scores = q.matmul(k.swap_dims(2, 3)) / (d as f64).sqrt();
    let mask =
        Tensor::<2, burn::tensor::Bool>::tril_mask([s, len], (len - s) as i64, &scores.device());
    let scores = scores.mask_fill(mask.unsqueeze::<4>(), f32::NEG_INFINITY);
    softmax(scores, 3).matmul(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random Q4_1 `[rows, cols]` weight on `device`.
    fn q4_1(rows: usize, cols: usize, device: &Device) -> PackedWeight {
        let mut bytes = penwright_kernels::random::random_matrix(GgmlType::Q4_1, rows, cols, 7);
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        let host = PackedHost {
            layout: PackedLayout {
                ty: GgmlType::Q4_1,
                rows,
                cols,
            },
            bytes: burn::tensor::Bytes::from_bytes_vec(bytes),
        };
        PackedWeight::upload(host, device)
    }

    /// The input gradient of `sum(x · Wᵀ · c)` for a fixed `c`.
    fn input_gradient(w: &PackedWeight, x: &Tensor<2>, c: &Tensor<2>) -> (Vec<f32>, Vec<f32>) {
        let x = x.clone().require_grad();
        let y = w.forward(x.clone());
        let out = y.clone().into_data().try_to_vec::<f32>().unwrap();
        let grads = (y * c.clone()).sum().backward();
        let dx = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        (out, dx)
    }

    #[test]
    fn the_8_bit_transposed_copy_gives_the_f32_input_gradient_within_its_rounding() {
        let device = Device::flex().autodiff();
        let (rows, cols) = (96, 160);
        let plain = q4_1(rows, cols, &device);
        let mut fast = q4_1(rows, cols, &device);
        if !fast.keep_transposed() {
            eprintln!("no 8-bit kernels on this CPU: the f32 path is the only one");
            return;
        }
        let mut rng = penwright_kernels::random::Rng::new(3);
        let mut tensor = |r: usize, c: usize| {
            let v: Vec<f32> = (0..r * c).map(|_| rng.normal(1.0)).collect();
            Tensor::<2>::from_data(TensorData::new(v, [r, c]), &device)
        };
        let (x, c) = (tensor(5, cols), tensor(5, rows));
        let (y_plain, dx_plain) = input_gradient(&plain, &x, &c);
        let (y_fast, dx_fast) = input_gradient(&fast, &x, &c);
        // the forward pass is the same product
        assert_eq!(y_plain, y_fast);
        // the gradient differs only by the 8-bit rounding of Wᵀ and of the incoming gradient
        let scale = dx_plain.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = dx_plain
            .iter()
            .zip(&dx_fast)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 0.02 * scale,
            "8-bit gradient off by {worst} (largest {scale})"
        );
        assert!(worst > 0.0, "the transposed copy was not used");
    }
}
