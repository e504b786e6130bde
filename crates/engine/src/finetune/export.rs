//! Fine-tuning beyond this machine: the writer's documents, split exactly as the app splits
//! them, written for an existing trainer that runs on GPU clusters. Penwright does not
//! train there itself; the PEFT adapter such a run produces imports back.
//!
//! The folder holds:
//! - `train.jsonl`, `heldout.jsonl`: one `{"text": ...}` per document;
//! - `axolotl.yaml`: an Axolotl config (LoRA, our targets, rank, alpha, dropout, sequence
//!   length, learning rate, steps, the base model's Hugging Face id);
//! - `penwright-lora.json` and `train_trl.py`: the same run as a TRL + PEFT script;
//! - `README.md`: how to run either and bring the adapter back.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::dataset::{Skipped, import, parts_for_split, split};
use super::train::FinetuneConfig;
use crate::{EngineError, Result};

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub train_documents: usize,
    pub heldout_documents: usize,
    pub files: Vec<String>,
    pub skipped: Vec<Skipped>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The trainer's settings: the same values `penwright finetune` would use.
fn run_settings(
    config: &FinetuneConfig,
    base_model: &str,
    targets: &[String],
) -> serde_json::Value {
    json!({
        "base_model": base_model,
        "lora_r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "lora_target_modules": targets,
        "sequence_len": config.seq_len,
        "micro_batch_size": config.batch,
        "gradient_accumulation_steps": config.grad_accum,
        "learning_rate": config.learning_rate,
        "warmup_ratio": config.warmup,
        "max_grad_norm": config.clip_norm,
        "max_steps": config.steps,
        "num_epochs": config.epochs.unwrap_or(1),
        "seed": config.seed,
    })
}

/// A YAML mapping of the settings: each value as JSON, which YAML reads as the same value.
fn axolotl_yaml(settings: &serde_json::Value) -> String {
    let mut out = String::from(
        "# Axolotl config written by `penwright finetune export`: the writer's documents,\n\
         # split as Penwright splits them, with Penwright's LoRA settings.\n\
         # Run: axolotl train axolotl.yaml   (the adapter lands in ./adapter)\n",
    );
    let mut line = |key: &str, value: serde_json::Value| {
        out.push_str(&format!("{key}: {value}\n"));
    };
    line("base_model", settings["base_model"].clone());
    line("adapter", json!("lora"));
    for key in [
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "sequence_len",
        "micro_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "warmup_ratio",
        "max_grad_norm",
        "num_epochs",
        "seed",
    ] {
        line(key, settings[key].clone());
    }
    if !settings["max_steps"].is_null() {
        line("max_steps", settings["max_steps"].clone());
    }
    line(
        "datasets",
        json!([{"path": "train.jsonl", "ds_type": "json", "type": "completion", "field": "text"}]),
    );
    line(
        "test_datasets",
        json!([{"path": "heldout.jsonl", "ds_type": "json", "type": "completion", "field": "text", "split": "train"}]),
    );
    line("sample_packing", json!(true));
    line("optimizer", json!("adamw_torch"));
    line("lr_scheduler", json!("cosine"));
    line("output_dir", json!("./adapter"));
    out
}

const TRL_SCRIPT: &str = r#"#!/usr/bin/env python3
"""TRL + PEFT run written by `penwright finetune export`: LoRA on train.jsonl with the
settings in penwright-lora.json (the same Penwright would use), held-out loss on
heldout.jsonl. Needs: pip install torch transformers peft trl datasets

    python train_trl.py [--base-model PATH_OR_ID] [--max-steps N]

The adapter lands in ./adapter (PEFT format): import it in Penwright's fine-tune pane.
"""
import argparse
import inspect
import json
import pathlib

from datasets import load_dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

here = pathlib.Path(__file__).resolve().parent
settings = json.loads((here / "penwright-lora.json").read_text())
parser = argparse.ArgumentParser()
parser.add_argument("--base-model", default=settings["base_model"])
parser.add_argument("--max-steps", type=int, default=settings["max_steps"] or -1)
args = parser.parse_args()

data = load_dataset(
    "json",
    data_files={"train": str(here / "train.jsonl"), "heldout": str(here / "heldout.jsonl")},
)
lora = LoraConfig(
    r=settings["lora_r"],
    lora_alpha=settings["lora_alpha"],
    lora_dropout=settings["lora_dropout"],
    target_modules=settings["lora_target_modules"],
    task_type="CAUSAL_LM",
)
# TRL renamed max_seq_length to max_length (0.16); take whichever this TRL has
length_field = "max_length" if "max_length" in inspect.signature(SFTConfig).parameters else "max_seq_length"
config = SFTConfig(
    output_dir=str(here / "adapter"),
    dataset_text_field="text",
    **{length_field: settings["sequence_len"]},
    packing=True,
    per_device_train_batch_size=settings["micro_batch_size"],
    gradient_accumulation_steps=settings["gradient_accumulation_steps"],
    learning_rate=settings["learning_rate"],
    warmup_ratio=settings["warmup_ratio"],
    max_grad_norm=settings["max_grad_norm"],
    num_train_epochs=settings["num_epochs"],
    max_steps=args.max_steps,
    seed=settings["seed"],
    eval_strategy="no",
    save_strategy="no",
    report_to=[],
)
trainer = SFTTrainer(
    model=args.base_model,
    args=config,
    train_dataset=data["train"],
    eval_dataset=data["heldout"],
    peft_config=lora,
)
trainer.train()
print(json.dumps({"heldout": trainer.evaluate()}))
trainer.model.save_pretrained(str(here / "adapter"))
"#;

fn write(dir: &Path, name: &str, text: &str, files: &mut Vec<String>) -> Result<()> {
    let path = dir.join(name);
    crate::fs::atomic_write(&path, text.as_bytes())?;
    files.push(name.to_string());
    Ok(())
}

fn jsonl(texts: impl Iterator<Item = String>) -> String {
    texts
        .map(|t| json!({ "text": t }).to_string() + "\n")
        .collect()
}

/// Writes the export of `data` into `dir` for a run on `base_model` (a Hugging Face id).
/// `targets` empty: the defaults for a Llama-family model (`q_proj`, `v_proj`).
pub fn export(
    data: &[PathBuf],
    dir: &Path,
    config: &FinetuneConfig,
    base_model: &str,
) -> Result<ExportSummary> {
    config.validate()?;
    let (docs, skipped, _) = import(data);
    let (docs, note) = parts_for_split(docs);
    if docs.len() < 2 {
        return Err(EngineError::InvalidRequest(format!(
            "{} usable document part(s): an export needs text to train on and text to hold out (two documents, or one with two paragraphs)",
            docs.len()
        )));
    }
    let (train, heldout) = split(&docs, config.heldout_percent, config.seed);
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let targets = if config.targets.is_empty() {
        vec!["q_proj".to_string(), "v_proj".to_string()]
    } else {
        config.targets.clone()
    };
    let settings = run_settings(config, base_model, &targets);
    let mut files = Vec::new();
    let texts = |indices: &[usize]| jsonl(indices.iter().map(|&i| docs[i].text.clone()));
    write(dir, "train.jsonl", &texts(&train), &mut files)?;
    write(dir, "heldout.jsonl", &texts(&heldout), &mut files)?;
    write(dir, "axolotl.yaml", &axolotl_yaml(&settings), &mut files)?;
    write(
        dir,
        "penwright-lora.json",
        &serde_json::to_string_pretty(&settings).expect("json"),
        &mut files,
    )?;
    write(dir, "train_trl.py", TRL_SCRIPT, &mut files)?;
    write(
        dir,
        "README.md",
        &format!(
            "# Fine-tune {base_model} on a cluster\n\n\
             Written by `penwright finetune export`: {} training and {} held-out documents, \
             split by document exactly as Penwright's fine-tune pane splits them.\n\n\
             - Axolotl: `axolotl train axolotl.yaml`\n\
             - TRL + PEFT: `pip install torch transformers peft trl datasets`, then \
             `python train_trl.py`\n\n\
             Either writes a PEFT adapter to `./adapter`. Bring it back with *Import adapter* \
             in the fine-tune pane (or `penwright generate --adapter adapter ...`).\n",
            train.len(),
            heldout.len()
        ),
        &mut files,
    )?;
    Ok(ExportSummary {
        dir: dir.to_path_buf(),
        train_documents: train.len(),
        heldout_documents: heldout.len(),
        files,
        skipped,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_holds_the_apps_split_and_configs_that_parse() {
        let src = tempfile::tempdir().unwrap();
        for i in 0..30 {
            std::fs::write(
                src.path().join(format!("doc{i}.txt")),
                format!("Document {i}.\n\nIt says \"something\" about item {i}."),
            )
            .unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let config = FinetuneConfig {
            steps: Some(20),
            ..FinetuneConfig::default()
        };
        let summary = export(
            &[src.path().to_path_buf()],
            out.path(),
            &config,
            "HuggingFaceTB/SmolLM2-135M-Instruct",
        )
        .unwrap();
        assert_eq!(summary.train_documents + summary.heldout_documents, 30);
        assert!(summary.heldout_documents >= 1);
        // the split is the one training uses
        let (docs, _, _) = import(&[src.path().to_path_buf()]);
        let (docs, _) = parts_for_split(docs);
        let (train, heldout) = split(&docs, config.heldout_percent, config.seed);
        let read = |name: &str| -> Vec<String> {
            std::fs::read_to_string(out.path().join(name))
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        let texts = |ix: &[usize]| ix.iter().map(|&i| docs[i].text.clone()).collect::<Vec<_>>();
        assert_eq!(read("train.jsonl"), texts(&train));
        assert_eq!(read("heldout.jsonl"), texts(&heldout));
        // the Axolotl config is YAML a YAML parser reads, with our values
        let yaml = std::fs::read_to_string(out.path().join("axolotl.yaml")).unwrap();
        let parsed = &yaml_rust2::YamlLoader::load_from_str(&yaml).unwrap()[0];
        assert_eq!(
            parsed["base_model"].as_str(),
            Some("HuggingFaceTB/SmolLM2-135M-Instruct")
        );
        assert_eq!(parsed["lora_r"].as_i64(), Some(8));
        assert_eq!(parsed["lora_alpha"].as_f64(), Some(16.0));
        assert_eq!(parsed["sequence_len"].as_i64(), Some(256));
        assert_eq!(parsed["max_steps"].as_i64(), Some(20));
        assert_eq!(parsed["lora_target_modules"][1].as_str(), Some("v_proj"));
        assert_eq!(parsed["datasets"][0]["path"].as_str(), Some("train.jsonl"));
        let settings: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("penwright-lora.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(settings["lora_dropout"], 0.05);
        assert!(out.path().join("train_trl.py").exists());
    }

    #[test]
    fn one_document_cannot_be_exported() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("only.txt"), "Just one paragraph.").unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = export(
            &[src.path().to_path_buf()],
            out.path(),
            &FinetuneConfig::default(),
            "x/y",
        )
        .unwrap_err();
        assert!(err.to_string().contains("two paragraphs"), "{err}");
    }
}
