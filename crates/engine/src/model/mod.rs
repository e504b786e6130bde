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
use penwright_kernels::cpu::{on_compute_threads, on_warm_compute_threads};
use penwright_kernels::ops::on_cpu;

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

/// Runs `$body` with `$net` bound to the network inside a [`Network`]: the one place that
/// lists the networks, used by inference and training alike.
macro_rules! with_network {
    ($network:expr, $net:ident => $body:expr) => {
        match $network {
            $crate::model::Network::Llama($net) => $body,
            $crate::model::Network::Gpt2($net) => $body,
        }
    };
}
pub(crate) use with_network;

/// What the network of every architecture offers. Inference ([`LanguageModel`]) and
/// training (`finetune::train`) reach a network only through this trait.
pub trait Decoder: burn::module::Module + Sized {
    /// The projections are GPT-2 Conv1D layers (PEFT's `fan_in_fan_out`).
    const CONV1D: bool;
    /// Final hidden states `[batch, seq, hidden]` (after the final norm) for `ids` placed
    /// after the cached positions; `rope`: the tables, for an architecture that uses RoPE.
    fn hidden(
        &self,
        ids: Tensor<2, Int>,
        rope: Option<&Rope>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3>;
    /// Logits of hidden states.
    fn head(&self, hidden: Tensor<3>) -> Tensor<3>;
    /// Every projection a LoRA adapter may target, in layer order.
    fn projections(&mut self) -> Vec<Projection<'_>>;
    /// The (frozen) output projection.
    fn output_projection(&mut self) -> &mut layers::Linear;
    /// Logits `[batch, seq, vocab]` of sequences starting at position 0, without a cache.
    fn logits(&self, ids: Tensor<2, Int>, rope: Option<&Rope>) -> Tensor<3> {
        self.head(self.hidden(ids, rope, None))
    }
}

impl Decoder for llama::Llama {
    const CONV1D: bool = false;
    fn hidden(
        &self,
        ids: Tensor<2, Int>,
        rope: Option<&Rope>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        self.forward_hidden(ids, rope.expect("a Llama network needs RoPE tables"), cache)
    }
    fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.lm_head(hidden)
    }
    fn projections(&mut self) -> Vec<Projection<'_>> {
        llama::Llama::projections(self)
    }
    fn output_projection(&mut self) -> &mut layers::Linear {
        &mut self.lm_head
    }
}

impl Decoder for gpt2::Gpt2 {
    const CONV1D: bool = true;
    fn hidden(
        &self,
        ids: Tensor<2, Int>,
        _rope: Option<&Rope>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        self.forward_hidden(ids, cache)
    }
    fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.lm_head(hidden)
    }
    fn projections(&mut self) -> Vec<Projection<'_>> {
        gpt2::Gpt2::projections(self)
    }
    fn output_projection(&mut self) -> &mut layers::Linear {
        &mut self.lm_head
    }
}

impl Network {
    /// Every projection a LoRA adapter may target, in layer order.
    pub fn projections(&mut self) -> Vec<Projection<'_>> {
        with_network!(self, m => m.projections())
    }
}

/// The RoPE tables of a model whose architecture uses them.
pub fn rope_for(config: &ModelConfig) -> Option<Rope> {
    config.architecture.uses_rope().then(|| Rope::new(config))
}

/// Refuses a config that describes more parameters than the file's tensors hold, before
/// anything is allocated for it: a header can claim any size, the tensor table says what
/// is there.
pub fn check_parameters_fit(config: &ModelConfig, weights: &WeightSource) -> Result<()> {
    // an untied head may be absent from the file (the embedding then stands in for it)
    let least = ModelConfig {
        tie_word_embeddings: true,
        ..config.clone()
    };
    let claimed = least.parameter_count() as u64;
    let stored = weights.stored_values();
    if claimed > stored {
        return Err(EngineError::Malformed {
            path: weights.path().to_path_buf(),
            what: format!(
                "its config describes a model of {claimed} parameters, but its tensors hold only {stored} values"
            ),
        });
    }
    Ok(())
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
        check_parameters_fit(&config, weights)?;
        if on_cpu(device) {
            crate::machine::keep_freed_buffers();
        }
        let network = match config.architecture {
            Architecture::Llama | Architecture::Qwen2 => {
                Network::Llama(llama::Llama::load(&config, weights, device, progress)?)
            }
            Architecture::Gpt2 => {
                Network::Gpt2(gpt2::Gpt2::load(&config, weights, device, progress)?)
            }
        };
        let rope = rope_for(&config);
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

    /// Runs a pass on the compute threads, which the kernels' parallel parts then share
    /// with it instead of competing with a caller that only waits; on the CPU the other
    /// threads stay awake between its products (see [`on_warm_compute_threads`]).
    fn compute<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if on_cpu(&self.device) {
            on_warm_compute_threads(f)
        } else {
            on_compute_threads(f)
        }
    }

    fn hidden(&self, ids: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.compute(|| with_network!(&self.network, m => m.hidden(ids, self.rope.as_ref(), cache)))
    }

    fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.compute(|| with_network!(&self.network, m => m.head(hidden)))
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
