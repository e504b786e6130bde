//! LoRA adapters in PEFT's format (`adapter_config.json` + `adapter_model.safetensors`),
//! made by PEFT or by Penwright, applied to a loaded model as a low-rank branch beside each
//! adapted projection: `y = x Wᵀ + (alpha / r) · x Aᵀ Bᵀ` (PEFT's `A` `[r, in]` and `B`
//! `[out, r]`). The base weights stay in their packed format, so an adapter costs only its
//! own few megabytes, and the result equals PEFT's merged `W + (alpha / r) · B A`.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::DropoutConfig;
use burn::tensor::Tensor;
use serde::Deserialize;

use crate::model::layers::{Linear, LoraBranch, upload};
use crate::model::{LanguageModel, Network};
use crate::weights::{SafetensorsWeights, WeightSource};
use crate::{EngineError, Result};

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct AdapterConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub target_modules: Vec<String>,
    /// Dropout on the LoRA branch's input while training (no effect on generation).
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
}

impl AdapterConfig {
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }
}

/// A PEFT adapter read from its folder.
pub struct Adapter {
    pub dir: PathBuf,
    pub config: AdapterConfig,
    weights: WeightSource,
}

impl Adapter {
    pub fn open(dir: &Path) -> Result<Self> {
        let config_path = dir.join("adapter_config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| EngineError::io(&config_path, e))?;
        let config: AdapterConfig =
            serde_json::from_str(&text).map_err(|e| EngineError::Malformed {
                path: config_path.clone(),
                what: e.to_string(),
            })?;
        if config.use_dora {
            return Err(EngineError::Config(format!(
                "{}: DoRA adapters are not supported",
                config_path.display()
            )));
        }
        let weights = WeightSource::Safetensors(SafetensorsWeights::open_dir(dir)?);
        Ok(Adapter {
            dir: dir.to_path_buf(),
            config,
            weights,
        })
    }

    /// `(A, B)` of one module, by its base-model path (e.g. `model.layers.0.self_attn.q_proj`).
    pub fn factors(
        &self,
        module: &str,
    ) -> Result<Option<(crate::weights::HostTensor, crate::weights::HostTensor)>> {
        let a = format!("base_model.model.{module}.lora_A.weight");
        let b = format!("base_model.model.{module}.lora_B.weight");
        if !self.weights.contains(&a) {
            return Ok(None);
        }
        Ok(Some((self.weights.get(&a)?, self.weights.get(&b)?)))
    }
}

fn attach(
    linear: &mut Linear,
    a: crate::weights::HostTensor,
    b: crate::weights::HostTensor,
    scale: f64,
    name: &str,
    dir: &Path,
) -> Result<()> {
    let [d_in, d_out] = linear.dims();
    let r = a.shape.first().copied().unwrap_or(0);
    if r == 0 || a.shape != [r, d_in] || b.shape != [d_out, r] {
        return Err(EngineError::TensorShape {
            path: dir.to_path_buf(),
            tensor: name.to_string(),
            expected: vec![r, d_in, d_out, r],
            actual: [a.shape.clone(), b.shape.clone()].concat(),
        });
    }
    let device = linear.weight.blocks.device();
    let a_t: Tensor<2> = upload(a.transposed(), &device); // [in, r]
    let b_t: Tensor<2> = upload(b.transposed(), &device); // [r, out]
    linear.lora = Some(LoraBranch {
        a: Param::from_tensor(a_t),
        b: Param::from_tensor(b_t),
        scale,
        dropout: DropoutConfig::new(0.0).init(),
    });
    Ok(())
}

/// Applies the adapter to the model's projections; returns how many it changed.
pub fn apply_adapter(model: &mut LanguageModel, adapter: &Adapter) -> Result<usize> {
    let scale = adapter.config.scale();
    let mut merged = 0;
    if adapter.config.fan_in_fan_out && !matches!(model.network, Network::Gpt2(_)) {
        // PEFT sets fan_in_fan_out only for Conv1D (GPT-2) layers
        return Err(EngineError::Config(format!(
            "{}: a fan_in_fan_out adapter (made for GPT-2's Conv1D layers) does not fit this {} model",
            adapter.dir.display(),
            model.config.architecture.name()
        )));
    }
    for projection in model.network.projections() {
        if let Some((a, b)) = adapter.factors(&projection.module)? {
            attach(
                projection.linear,
                a,
                b,
                scale,
                &projection.module,
                &adapter.dir,
            )?;
            merged += 1;
        }
    }
    if merged == 0 {
        return Err(EngineError::Config(format!(
            "{}: the adapter has no tensors for this model's layers",
            adapter.dir.display()
        )));
    }
    Ok(merged)
}
