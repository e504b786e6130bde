//! Writing LoRA adapters in PEFT's format: `adapter_config.json` and
//! `adapter_model.safetensors` with PEFT's key names (`base_model.model.<module>.lora_A.weight`
//! `[r, in]`, `lora_B.weight` `[out, r]`), so transformers + peft load what Penwright trains.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, serialize};

use crate::fs::atomic_write;
use crate::lora::AdapterConfig;
use crate::weights::HostTensor;
use crate::{EngineError, Result};

/// One adapted module: its base-model path and PEFT's A `[r, in]` and B `[out, r]`.
pub struct AdapterTensors {
    pub module: String,
    pub a: HostTensor,
    pub b: HostTensor,
}

struct View<'a>(&'a HostTensor, Vec<u8>);

impl safetensors::View for &View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.1)
    }
    fn data_len(&self) -> usize {
        self.1.len()
    }
}

/// Writes the adapter folder (atomically per file).
pub fn save_adapter(dir: &Path, config: &AdapterConfig, tensors: &[AdapterTensors]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let mut views: BTreeMap<String, View> = BTreeMap::new();
    for t in tensors {
        for (suffix, h) in [("lora_A", &t.a), ("lora_B", &t.b)] {
            let bytes: Vec<u8> = h.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            views.insert(
                format!("base_model.model.{}.{suffix}.weight", t.module),
                View(h, bytes),
            );
        }
    }
    let data = serialize(views.iter().map(|(k, v)| (k.clone(), v)), None)
        .map_err(|e| EngineError::Other(format!("cannot serialize the adapter: {e}")))?;
    atomic_write(&dir.join("adapter_model.safetensors"), &data)?;
    let json = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": config.target_modules,
        "bias": "none",
        "fan_in_fan_out": config.fan_in_fan_out,
        "use_rslora": false,
        "use_dora": false,
        "inference_mode": true,
        "base_model_name_or_path": config.base_model_name_or_path,
    });
    atomic_write(
        &dir.join("adapter_config.json"),
        serde_json::to_string_pretty(&json)
            .expect("json")
            .as_bytes(),
    )
}
