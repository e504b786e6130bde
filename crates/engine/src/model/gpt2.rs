//! GPT-2: learned absolute positions, pre-LayerNorm blocks, fused `c_attn`, GELU (tanh),
//! `Conv1D` weights stored `[in, out]`, output tied to the token embedding.

use burn::module::Module;
use burn::tensor::activation::gelu_approximate;
use burn::tensor::{Device, Int, Tensor};

use super::kv_cache::KvCache;
use super::layers::{Embedding, LayerNorm, Linear, grouped_attention};
use crate::Result;
use crate::config::ModelConfig;
use crate::weights::WeightSource;

#[derive(Module, Debug)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub c_attn: Linear,
    pub attn_c_proj: Linear,
    pub ln_2: LayerNorm,
    pub c_fc: Linear,
    pub mlp_c_proj: Linear,
    pub num_heads: usize,
}

#[derive(Module, Debug)]
pub struct Gpt2 {
    pub wte: Embedding,
    pub wpe: Embedding,
    pub h: Vec<Block>,
    pub ln_f: LayerNorm,
    /// The token embedding, transposed once (`[hidden, vocab]`): GPT-2 ties its output.
    pub lm_head: Linear,
}

impl Gpt2 {
    pub fn load(
        config: &ModelConfig,
        w: &WeightSource,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let (d, inner, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.norm_eps,
        );
        let wte = Embedding::load(w, "transformer.wte.weight", [config.vocab_size, d], device)?;
        let wpe = Embedding::load(
            w,
            "transformer.wpe.weight",
            [config.max_position_embeddings, d],
            device,
        )?;
        let mut h = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            progress(l, config.num_layers);
            let p = format!("transformer.h.{l}");
            h.push(Block {
                ln_1: LayerNorm::load(w, &format!("{p}.ln_1"), d, eps, device)?,
                c_attn: Linear::from_hf_conv1d(w, &format!("{p}.attn.c_attn"), [d, 3 * d], device)?,
                attn_c_proj: Linear::from_hf_conv1d(
                    w,
                    &format!("{p}.attn.c_proj"),
                    [d, d],
                    device,
                )?,
                ln_2: LayerNorm::load(w, &format!("{p}.ln_2"), d, eps, device)?,
                c_fc: Linear::from_hf_conv1d(w, &format!("{p}.mlp.c_fc"), [d, inner], device)?,
                mlp_c_proj: Linear::from_hf_conv1d(
                    w,
                    &format!("{p}.mlp.c_proj"),
                    [inner, d],
                    device,
                )?,
                num_heads: config.num_heads,
            });
        }
        progress(config.num_layers, config.num_layers);
        let ln_f = LayerNorm::load(w, "transformer.ln_f", d, eps, device)?;
        let lm_head = Linear::tied(&wte);
        Ok(Gpt2 {
            wte,
            wpe,
            h,
            ln_f,
            lm_head,
        })
    }

    pub fn forward_hidden(
        &self,
        ids: Tensor<2, Int>,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [batch, seq] = ids.dims();
        let device = ids.device();
        let start = cache.as_ref().map_or(0, |c| c.len());
        let positions = Tensor::<1, Int>::arange(start as i64..(start + seq) as i64, &device)
            .reshape([1, seq])
            .expand([batch, seq]);
        let mut x = self.wte.forward(ids) + self.wpe.forward(positions);
        let d = x.dims()[2];
        for (l, block) in self.h.iter().enumerate() {
            let heads = block.num_heads;
            let hd = d / heads;
            let qkv = block.c_attn.forward(block.ln_1.forward(x.clone()));
            let split = |i: usize| {
                qkv.clone()
                    .narrow(2, i * d, d)
                    .reshape([batch, seq, heads, hd])
                    .swap_dims(1, 2)
            };
            let (q, k, v) = (split(0), split(1), split(2));
            let attended = match cache.as_deref_mut() {
                Some(c) => c.attend(l, start, q, k, v),
                None => grouped_attention(q, k, v),
            };
            let out = attended.swap_dims(1, 2).reshape([batch, seq, d]);
            x = x + block.attn_c_proj.forward(out);
            let h = gelu_approximate(block.c_fc.forward(block.ln_2.forward(x.clone())));
            x = x + block.mlp_c_proj.forward(h);
        }
        self.ln_f.forward(x)
    }

    /// Every projection LoRA may target (see [`super::Projection`]); GPT-2's Conv1D stores
    /// `[in, out]` like our `Linear`, so PEFT's fan_in_fan_out factors fit as they do for
    /// `nn.Linear` layers elsewhere.
    pub fn projections(&mut self) -> Vec<super::Projection<'_>> {
        let mut out = Vec::with_capacity(4 * self.h.len());
        for (l, block) in self.h.iter_mut().enumerate() {
            let table: [(&str, &'static str, &mut Linear); 4] = [
                ("attn.c_attn", "c_attn", &mut block.c_attn),
                ("attn.c_proj", "c_proj", &mut block.attn_c_proj),
                ("mlp.c_fc", "c_fc", &mut block.c_fc),
                ("mlp.c_proj", "c_proj", &mut block.mlp_c_proj),
            ];
            for (path, name, linear) in table {
                out.push(super::Projection {
                    module: format!("transformer.h.{l}.{path}"),
                    name,
                    linear,
                });
            }
        }
        out
    }

    pub fn lm_head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.lm_head.forward(hidden)
    }
}
