//! Our GPT, written with burn: one module per architecture over shared layers, plus the
//! KV cache they write into.

pub mod gpt2;
pub mod kv_cache;
pub mod layers;
pub mod llama;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{Architecture, ModelConfig};
use crate::weights::WeightSource;
use crate::{EngineError, Result};
pub use kv_cache::KvCache;
use layers::Rope;
use penwright_kernels::cpu::on_compute_threads;

/// The network of one of the supported architectures.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per loaded model, moved once
pub enum Network {
    Llama(llama::Llama),
    Gpt2(gpt2::Gpt2),
}

/// One projection of a network as adapters name it.
pub struct Projection<'a> {
    /// The Hugging Face module path (`model.layers.0.self_attn.q_proj`), PEFT's key stem.
    pub module: String,
    /// The short name `target_modules` match (`q_proj`, `c_attn`, …).
    pub name: &'static str,
    pub linear: &'a mut layers::Linear,
}

impl Network {
    /// Every projection a LoRA adapter may target, in layer order.
    pub fn projections(&mut self) -> Vec<Projection<'_>> {
        match self {
            Network::Llama(m) => m.projections(),
            Network::Gpt2(m) => m.projections(),
        }
    }
}

/// A loaded causal language model on a device.
pub struct LanguageModel {
    pub config: ModelConfig,
    pub network: Network,
    rope: Option<Rope>,
    device: Device,
}

impl LanguageModel {
    /// Builds the network from its weights on `device`; `progress(layer, layers)`.
    pub fn load(
        config: ModelConfig,
        weights: &WeightSource,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let (network, rope) = match config.architecture {
            Architecture::Llama | Architecture::Qwen2 => (
                Network::Llama(llama::Llama::load(&config, weights, device, progress)?),
                Some(Rope::new(&config)),
            ),
            Architecture::Gpt2 => (
                Network::Gpt2(gpt2::Gpt2::load(&config, weights, device, progress)?),
                None,
            ),
        };
        Ok(LanguageModel {
            config,
            network,
            rope,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A cache able to hold `capacity` positions (at most the model's context length).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        let c = &self.config;
        KvCache::new(
            c.num_layers,
            c.num_kv_heads,
            c.head_dim,
            capacity.min(c.max_position_embeddings).max(1),
            &self.device,
        )
    }

    fn hidden(&self, ids: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        // the pass runs on one of the compute threads, which the kernels' parallel parts then
        // share with it instead of competing with a caller that only waits
        on_compute_threads(|| match &self.network {
            Network::Llama(m) => m.forward_hidden(ids, self.rope.as_ref().expect("rope"), cache),
            Network::Gpt2(m) => m.forward_hidden(ids, cache),
        })
    }

    fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        on_compute_threads(|| match &self.network {
            Network::Llama(m) => m.lm_head(hidden),
            Network::Gpt2(m) => m.lm_head(hidden),
        })
    }

    /// Logits `[batch, seq, vocab]` of a batch of sequences starting at position 0, no cache
    /// (perplexity and training).
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let hidden = self.hidden(ids, None);
        self.head(hidden)
    }

    /// Feeds `ids` after the positions the cache holds and returns the logits of every new
    /// position (`all = true`, `[ids.len(), vocab]`) or of the last one only (`[1, vocab]`).
    pub fn forward_cached(&self, ids: &[u32], cache: &mut KvCache, all: bool) -> Result<Tensor<2>> {
        if ids.is_empty() {
            return Err(EngineError::Other("forward pass over no tokens".into()));
        }
        let needed = cache.len() + ids.len();
        if needed > cache.capacity() {
            return Err(EngineError::ContextOverflow {
                tokens: needed,
                context: cache.capacity(),
            });
        }
        let vocab = self.config.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(EngineError::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        let s = ids.len();
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, s]),
            &self.device,
        );
        let hidden = self.hidden(input, Some(cache));
        cache.commit(ids);
        let hidden = if all {
            hidden
        } else {
            hidden.narrow(1, s - 1, 1)
        };
        let rows = hidden.dims()[1];
        Ok(self.head(hidden).reshape([rows, vocab]))
    }

    /// Reads a `[rows, vocab]` logits tensor back to the host.
    pub fn to_rows(logits: Tensor<2>) -> Result<Vec<Vec<f32>>> {
        let [rows, vocab] = logits.dims();
        let flat = logits
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| EngineError::Device(format!("{e:?}")))?;
        debug_assert_eq!(flat.len(), rows * vocab);
        Ok(flat.chunks(vocab).map(<[f32]>::to_vec).collect())
    }
}
