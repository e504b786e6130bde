//! The Llama family (Llama 2/3, SmolLM2, TinyLlama, Mistral-style) and Qwen2 (the same
//! shape with q/k/v biases): RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

use super::kv_cache::KvCache;
use super::layers::{Embedding, Linear, RmsNorm, Rope, grouped_attention};
use crate::Result;
use crate::config::ModelConfig;
use crate::weights::WeightSource;

#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

#[derive(Module, Debug)]
pub struct Block {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

#[derive(Module, Debug)]
pub struct Llama {
    pub embed_tokens: Embedding,
    pub layers: Vec<Block>,
    pub norm: RmsNorm,
    /// The output projection `[hidden, vocab]`; a transposed copy of the token embedding when
    /// the two are tied (so decoding never transposes the embedding per token).
    pub lm_head: Linear,
}

impl Llama {
    pub fn load(
        config: &ModelConfig,
        w: &WeightSource,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let q_dim = config.num_heads * config.head_dim;
        let kv_dim = config.num_kv_heads * config.head_dim;
        let bias = config.attention_bias;
        let eps = config.norm_eps;
        let embed_tokens = Embedding::load(
            w,
            "model.embed_tokens.weight",
            [config.vocab_size, h],
            device,
        )?;
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            progress(l, config.num_layers);
            let p = format!("model.layers.{l}");
            let attn = |name: &str, out: usize, bias: bool| {
                Linear::from_hf_linear(w, &format!("{p}.self_attn.{name}"), [out, h], bias, device)
            };
            let self_attn = Attention {
                q_proj: attn("q_proj", q_dim, bias)?,
                k_proj: attn("k_proj", kv_dim, bias)?,
                v_proj: attn("v_proj", kv_dim, bias)?,
                o_proj: Linear::from_hf_linear(
                    w,
                    &format!("{p}.self_attn.o_proj"),
                    [h, q_dim],
                    false,
                    device,
                )?,
                num_heads: config.num_heads,
                num_kv_heads: config.num_kv_heads,
                head_dim: config.head_dim,
            };
            let mlp = Mlp {
                gate_proj: Linear::from_hf_linear(
                    w,
                    &format!("{p}.mlp.gate_proj"),
                    [i, h],
                    false,
                    device,
                )?,
                up_proj: Linear::from_hf_linear(
                    w,
                    &format!("{p}.mlp.up_proj"),
                    [i, h],
                    false,
                    device,
                )?,
                down_proj: Linear::from_hf_linear(
                    w,
                    &format!("{p}.mlp.down_proj"),
                    [h, i],
                    false,
                    device,
                )?,
            };
            layers.push(Block {
                input_layernorm: RmsNorm::load(
                    w,
                    &format!("{p}.input_layernorm.weight"),
                    h,
                    eps,
                    device,
                )?,
                self_attn,
                post_attention_layernorm: RmsNorm::load(
                    w,
                    &format!("{p}.post_attention_layernorm.weight"),
                    h,
                    eps,
                    device,
                )?,
                mlp,
            });
        }
        progress(config.num_layers, config.num_layers);
        let norm = RmsNorm::load(w, "model.norm.weight", h, eps, device)?;
        let lm_head = if config.tie_word_embeddings || !w.contains("lm_head.weight") {
            Linear::tied(&embed_tokens)
        } else {
            Linear::from_hf_linear(w, "lm_head", [config.vocab_size, h], false, device)?
        };
        Ok(Llama {
            embed_tokens,
            layers,
            norm,
            lm_head,
        })
    }

    /// Final hidden states `[batch, seq, hidden]` (after the final norm) for `ids` placed at
    /// positions `start..`; with a cache, keys/values are appended to it.
    pub fn forward_hidden(
        &self,
        ids: Tensor<2, Int>,
        rope: &Rope,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [batch, seq] = ids.dims();
        let device = ids.device();
        let start = cache.as_ref().map_or(0, |c| c.len());
        let (cos, sin) = rope.tables(start, seq, &device);
        let mut x = self.embed_tokens.forward(ids);
        for (l, block) in self.layers.iter().enumerate() {
            let a = &block.self_attn;
            let h = block.input_layernorm.forward(x.clone());
            let heads =
                |t: Tensor<3>, n: usize| t.reshape([batch, seq, n, a.head_dim]).swap_dims(1, 2);
            let [q, k, v] = Linear::forward_triple([&a.q_proj, &a.k_proj, &a.v_proj], h);
            let q = Rope::apply(heads(q, a.num_heads), &cos, &sin);
            let k = Rope::apply(heads(k, a.num_kv_heads), &cos, &sin);
            let v = heads(v, a.num_kv_heads);
            let attended = match cache.as_deref_mut() {
                Some(c) => c.attend(l, start, q, k, v),
                None => grouped_attention(q, k, v),
            };
            let out = attended
                .swap_dims(1, 2)
                .reshape([batch, seq, a.num_heads * a.head_dim]);
            x = x + a.o_proj.forward(out);
            let h = block.post_attention_layernorm.forward(x.clone());
            let m = &block.mlp;
            let [gate, up] = Linear::forward_pair([&m.gate_proj, &m.up_proj], h);
            let gated = penwright_kernels::ops::swiglu(gate, up);
            x = x + m.down_proj.forward(gated);
        }
        self.norm.forward(x)
    }

    /// Every projection LoRA may target (see [`super::Projection`]).
    pub fn projections(&mut self) -> Vec<super::Projection<'_>> {
        let mut out = Vec::with_capacity(7 * self.layers.len());
        for (l, block) in self.layers.iter_mut().enumerate() {
            let (attn, mlp) = (&mut block.self_attn, &mut block.mlp);
            let table: [(&str, &'static str, &mut Linear); 7] = [
                ("self_attn", "q_proj", &mut attn.q_proj),
                ("self_attn", "k_proj", &mut attn.k_proj),
                ("self_attn", "v_proj", &mut attn.v_proj),
                ("self_attn", "o_proj", &mut attn.o_proj),
                ("mlp", "gate_proj", &mut mlp.gate_proj),
                ("mlp", "up_proj", &mut mlp.up_proj),
                ("mlp", "down_proj", &mut mlp.down_proj),
            ];
            for (group, name, linear) in table {
                out.push(super::Projection {
                    module: format!("model.layers.{l}.{group}.{name}"),
                    name,
                    linear,
                });
            }
        }
        out
    }

    /// Logits `[batch, seq, vocab]` from final hidden states.
    pub fn lm_head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.lm_head.forward(hidden)
    }
}
