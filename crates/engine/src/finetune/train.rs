//! LoRA fine-tuning with burn's autodiff: frozen base weights (a quantized GGUF base is
//! dequantized), trainable low-rank factors on the target projections, AdamW with warm-up +
//! cosine learning rate, gradient clipping and accumulation, a seeded data order, held-out
//! perplexity before, during and after, atomic checkpoints that `resume` continues from with
//! the same data order, and a PEFT-format adapter at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::ParamId;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Distribution, FloatDType, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::compare::{Comparison, compare};
use super::dataset::{self, DatasetReport};
use super::peft::{AdapterTensors, save_adapter};
use crate::config::{Architecture, ModelConfig};
use crate::device::SelectedDevice;
use crate::loader::load_model;
use crate::lora::AdapterConfig;
use crate::model::layers::{LoraBranch, Rope};
use crate::model::{Decoder, rope_for, with_network};
use crate::weights::HostTensor;
use crate::{EngineError, Result};

/// Settings of a fine-tuning run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FinetuneConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Dropout on the LoRA branches' input while training (PEFT's `lora_dropout`).
    pub dropout: f64,
    /// Module names to adapt (`q_proj`, `v_proj`, …; `c_attn` for GPT-2); `["all-linear"]`
    /// adapts every projection.
    pub targets: Vec<String>,
    pub steps: Option<usize>,
    pub epochs: Option<usize>,
    pub seq_len: usize,
    pub batch: usize,
    pub grad_accum: usize,
    pub learning_rate: f64,
    /// Fraction of the steps spent warming up.
    pub warmup: f64,
    pub clip_norm: f32,
    /// Held-out perplexity every N steps (0 = only before and after).
    pub eval_every: usize,
    pub checkpoint_every: usize,
    pub seed: u64,
    pub heldout_percent: u64,
    /// Held-out perplexity is measured on at most this many tokens, rows taken evenly from
    /// all held-out documents (0: every held-out token). The same rows before and after.
    pub heldout_max_tokens: usize,
    /// Where to train: a GPU through wgpu, or the CPU (`auto` as for inference).
    pub device: crate::device::DeviceChoice,
    /// Recompute memory-bound activations in the backward pass instead of keeping them
    /// (burn's balanced gradient checkpointing): less memory, more compute.
    pub gradient_checkpointing: bool,
    /// The precision of the frozen base weights and their products (the LoRA factors,
    /// norms, attention scores and loss stay f32).
    pub precision: Precision,
    /// On a CPU with 8-bit integer kernels, the input gradients of the frozen projections
    /// come from an 8-bit copy of each transposed weight (about a byte per weight) rather
    /// than f32 products of dequantized tiles: the backward pass runs about as fast as the
    /// forward one. Off: the f32 path (the reference it is compared with).
    pub int8_gradients: bool,
}

impl FinetuneConfig {
    /// The training and held-out rows a run with these settings trains and measures on
    /// (the app's preview shows the same split).
    pub fn dataset(
        &self,
        paths: &[PathBuf],
        tokenizer: &crate::tokenizer::Tokenizer,
    ) -> Result<dataset::Dataset> {
        let mut ds = dataset::build(
            paths,
            tokenizer,
            self.seq_len + 1,
            self.heldout_percent,
            self.seed,
        )?;
        ds.heldout = evenly_within(ds.heldout, self.heldout_max_tokens);
        ds.report.evaluated_tokens = ds.heldout.iter().map(|r| r.len().saturating_sub(1)).sum();
        Ok(ds)
    }

    /// Checks every value a writer (or a script) can set, in one place for the CLI and the
    /// app: each refusal names the setting, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(EngineError::InvalidRequest(what));
        if !(1..=1024).contains(&self.rank) {
            return bad(format!("rank is {}; it must be 1 to 1024", self.rank));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!(
                "alpha is {}; it must be a positive number",
                self.alpha
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!(
                "dropout is {}; it must be at least 0 and below 1",
                self.dropout
            ));
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 1.0)
        {
            return bad(format!(
                "the learning rate is {}; it must be above 0 and at most 1",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad(format!(
                "warmup is {}; it must be a fraction below 1",
                self.warmup
            ));
        }
        if !(self.clip_norm.is_finite() && self.clip_norm >= 0.0) {
            return bad(format!(
                "clip_norm is {}; it must be 0 (off) or positive",
                self.clip_norm
            ));
        }
        for (name, value, max) in [
            ("batch", self.batch, 1024),
            ("grad_accum", self.grad_accum, 1024),
            ("seq_len", self.seq_len, 1 << 16),
        ] {
            if !(1..=max).contains(&value) {
                return bad(format!("{name} is {value}; it must be 1 to {max}"));
            }
        }
        if self.seq_len < 8 {
            return bad(format!(
                "seq_len is {}; it must be at least 8",
                self.seq_len
            ));
        }
        if self.steps == Some(0) || self.epochs == Some(0) {
            return bad("steps and epochs must be at least 1".into());
        }
        if !(1..=50).contains(&self.heldout_percent) {
            return bad(format!(
                "the held-out share is {}%; it must be 1 to 50%",
                self.heldout_percent
            ));
        }
        Ok(())
    }
}

/// Precision of the frozen base model while training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// The lower precision, if any.
    fn half(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::F16 => Some(FloatDType::F16),
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "f16" | "fp16" => Ok(Precision::F16),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision '{other}' (f32, f16 or bf16)")),
        }
    }
}

/// Checks that `device` computes products in `precision` correctly, before a run relies on
/// it: a 64×256 by 256×256 product in the lower precision must agree with f32 to 1% (f16 is
/// ~5e-4 off, bf16 ~4e-3). A device without the type, or with a broken kernel, fails here
/// with a message instead of training on garbage. Returns the measured relative error.
pub fn check_precision(precision: Precision, device: &Device, name: &str) -> Result<f64> {
    let Some(dtype) = precision.half() else {
        return Ok(0.0);
    };
    let (m, k, n) = (64usize, 256usize, 256usize);
    let host =
        |len: usize, f: f32| -> Vec<f32> { (0..len).map(|i| ((i as f32) * f).sin()).collect() };
    let device = device.clone().inner();
    let probe = || -> std::result::Result<f64, String> {
        let x = Tensor::<2>::from_data(TensorData::new(host(m * k, 0.37), [m, k]), &device);
        let w = Tensor::<2>::from_data(TensorData::new(host(k * n, 0.91), [k, n]), &device) / 16.0;
        let exact = x.clone().matmul(w.clone());
        let low = x.cast(dtype).matmul(w.cast(dtype)).cast(FloatDType::F32);
        let err = (exact.clone() - low).square().sum().sqrt() / exact.square().sum().sqrt();
        let v = err
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?[0];
        Ok(v as f64)
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe));
    let what = precision.as_str();
    match outcome {
        Ok(Ok(err)) if err.is_finite() && err < 1e-2 => Ok(err),
        Ok(Ok(err)) => Err(EngineError::Device(format!(
            "{name} does not compute {what} correctly (relative error {err:.1e} against f32): train in f32"
        ))),
        Ok(Err(e)) => Err(EngineError::Device(format!(
            "{name} cannot compute in {what} ({e}): train in f32"
        ))),
        Err(panic) => Err(EngineError::Device(format!(
            "{name} cannot compute in {what} ({}): train in f32",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("the kernel panicked")
        ))),
    }
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: Vec::new(),
            steps: None,
            epochs: None,
            seq_len: 256,
            batch: 4,
            grad_accum: 1,
            learning_rate: 2e-4,
            warmup: 0.1,
            clip_norm: 1.0,
            eval_every: 0,
            checkpoint_every: 50,
            seed: 42,
            heldout_percent: 10,
            heldout_max_tokens: 8192,
            device: crate::device::DeviceChoice::Auto,
            gradient_checkpointing: false,
            precision: Precision::F32,
            int8_gradients: true,
        }
    }
}

/// The Fine-tune pane's presets; each is a whole [`FinetuneConfig`].
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TrainingPreset {
    /// A first taste of the writer's style in minutes.
    #[default]
    Quick,
    /// A larger adapter, longer sequences, more steps: closer to the style, much longer.
    Thorough,
}

impl TrainingPreset {
    pub const ALL: [TrainingPreset; 2] = [TrainingPreset::Quick, TrainingPreset::Thorough];
}

impl FinetuneConfig {
    /// The settings of a preset.
    pub fn preset(preset: TrainingPreset) -> Self {
        let base = FinetuneConfig {
            steps: Some(200),
            eval_every: 25,
            checkpoint_every: 25,
            ..FinetuneConfig::default()
        };
        match preset {
            TrainingPreset::Quick => base,
            TrainingPreset::Thorough => FinetuneConfig {
                rank: 16,
                alpha: 32.0,
                steps: Some(800),
                learning_rate: 1e-4,
                seq_len: 512,
                batch: 8,
                eval_every: 50,
                ..base
            },
        }
    }
}

/// What a writer sets for a run (the app's Fine-tune pane): a preset, and any of its
/// settings changed. What is left out comes from the preset.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TrainingChoices {
    pub preset: TrainingPreset,
    pub rank: Option<usize>,
    pub alpha: Option<f64>,
    pub steps: Option<usize>,
    pub learning_rate: Option<f64>,
    pub seq_len: Option<usize>,
    pub batch: Option<usize>,
    pub eval_every: Option<usize>,
    pub dropout: Option<f64>,
    pub device: Option<crate::device::DeviceChoice>,
    pub gradient_checkpointing: Option<bool>,
    pub precision: Option<Precision>,
}

impl TrainingChoices {
    /// The run's settings: the preset with the writer's changes, checked.
    pub fn config(&self) -> Result<FinetuneConfig> {
        let base = FinetuneConfig::preset(self.preset);
        let config = FinetuneConfig {
            rank: self.rank.unwrap_or(base.rank),
            alpha: self.alpha.unwrap_or(base.alpha),
            steps: self.steps.or(base.steps),
            learning_rate: self.learning_rate.unwrap_or(base.learning_rate),
            seq_len: self.seq_len.unwrap_or(base.seq_len),
            batch: self.batch.unwrap_or(base.batch),
            eval_every: self.eval_every.unwrap_or(base.eval_every),
            dropout: self.dropout.unwrap_or(base.dropout),
            device: self.device.unwrap_or(base.device),
            gradient_checkpointing: self
                .gradient_checkpointing
                .unwrap_or(base.gradient_checkpointing),
            precision: self.precision.unwrap_or(base.precision),
            ..base
        };
        config.validate()?;
        Ok(config)
    }
}

/// Reported while training: the data for the pane's live chart.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "camelCase")]
pub enum FinetuneEvent {
    /// Where training runs, and why.
    Device(TrainingDevice),
    Dataset(DatasetReport),
    #[serde(rename_all = "camelCase")]
    Step {
        step: usize,
        total_steps: usize,
        loss: f64,
        learning_rate: f64,
        tokens_per_s: f64,
        eta_s: f64,
    },
    #[serde(rename_all = "camelCase")]
    Eval {
        step: usize,
        heldout_ppl: f64,
    },
    #[serde(rename_all = "camelCase")]
    Checkpoint {
        step: usize,
        path: PathBuf,
    },
}

/// Where a job trains, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingDevice {
    pub name: String,
    pub reason: String,
    /// `f32`, or the lower precision the base model runs in.
    pub precision: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FinetuneSummary {
    pub steps: usize,
    pub train_tokens: usize,
    pub base_ppl: f64,
    pub tuned_ppl: f64,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub adapter: PathBuf,
    /// Training loss per step, from step 1 (a resumed run includes the earlier steps).
    #[serde(default)]
    pub losses: Vec<f64>,
    /// The base and the tuned model continuing the same held-out passage (none without a
    /// held-out document).
    #[serde(default)]
    pub comparison: Option<Comparison>,
    #[serde(default)]
    pub phases: StepPhases,
}

/// Where this session's training steps spent their time, in seconds over all its steps:
/// the forward pass to the loss, the backward pass to the LoRA gradients, the optimizer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepPhases {
    pub forward: f64,
    pub backward: f64,
    pub optimizer: f64,
}

/// What a checkpoint remembers besides the adapter and optimizer state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CheckpointState {
    step: usize,
    total_steps: usize,
    config: FinetuneConfig,
    losses: Vec<f64>,
    base_ppl: f64,
    seconds: f64,
}

fn default_targets(arch: Architecture) -> Vec<String> {
    match arch {
        Architecture::Gpt2 => vec!["c_attn".into()],
        _ => vec!["q_proj".into(), "v_proj".into()],
    }
}

/// A stable parameter id per path, so a resumed run's optimizer state finds its parameters.
fn param_id(path: &str) -> ParamId {
    let mut h = 0xcbf29ce484222325u64;
    for b in path.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    ParamId::from(h)
}

/// Freezes the network and attaches a LoRA branch to each chosen projection (by module
/// path): the given factors (resume) or fresh ones (A ~ N(0, 1/r), B = 0, so the model
/// starts unchanged).
fn attach_lora<M: Decoder>(
    net: M,
    mut chosen: HashMap<String, Option<(Tensor<2>, Tensor<2>)>>,
    rank: usize,
    scale: f64,
    dropout: f64,
) -> M {
    let mut net = net.no_grad();
    for p in net.projections() {
        let Some(given) = chosen.remove(&p.module) else {
            continue;
        };
        let device = p.linear.weight.blocks.device();
        let [d_in, d_out] = p.linear.dims();
        let (a, b) = given.unwrap_or_else(|| {
            (
                Tensor::<2>::random(
                    [d_in, rank],
                    Distribution::Normal(0.0, 1.0 / rank as f64),
                    &device,
                ),
                Tensor::<2>::zeros([rank, d_out], &device),
            )
        });
        let module = p.module;
        p.linear.lora = Some(LoraBranch::new(a, b, scale, dropout, |which| {
            param_id(&format!("{module}.{which}"))
        }));
    }
    net
}

/// Keeps the frozen projections (and the output projection) in the run's lower precision.
fn store_base_as<M: Decoder>(net: &mut M, precision: Precision) {
    if let Some(dtype) = precision.half() {
        for p in net.projections() {
            p.linear.store_as(dtype);
        }
        net.output_projection().store_as(dtype);
    }
}

fn to_host(t: Tensor<2>) -> Result<HostTensor> {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| EngineError::Device(format!("{e:?}")))?;
    Ok(HostTensor { data, shape })
}

/// The trained factors in PEFT's layout (A `[r, in]`, B `[out, r]`).
fn adapter_tensors<M: Decoder>(net: &mut M) -> Result<Vec<AdapterTensors>> {
    let mut out = Vec::new();
    for p in net.projections() {
        if let Some(branch) = &p.linear.lora {
            out.push(AdapterTensors {
                a: to_host(branch.a.val().inner())?.transposed(),
                b: to_host(branch.b.val().inner())?.transposed(),
                module: p.module,
            });
        }
    }
    Ok(out)
}

fn ids_tensor(rows: &[&[u32]], device: &Device) -> Tensor<2, Int> {
    let s = rows[0].len();
    let flat: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&i| i as i64))
        .collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), s]), device)
}

/// Mean next-token negative log-likelihood of equal-length sequences.
fn batch_loss<M: Decoder>(
    net: &M,
    rows: &[&[u32]],
    rope: Option<&Rope>,
    device: &Device,
) -> Tensor<1> {
    let s = rows[0].len();
    let inputs: Vec<&[u32]> = rows.iter().map(|r| &r[..s - 1]).collect();
    let targets: Vec<&[u32]> = rows.iter().map(|r| &r[1..]).collect();
    let logits = net.logits(ids_tensor(&inputs, device), rope);
    let [b, t, v] = logits.dims();
    // one fused op: log-softmax and a gather would each fill [b·t, v] temporaries (200 MB
    // at 1020 tokens of a 49k vocabulary), forward and backward
    let targets = ids_tensor(&targets, device).reshape([b * t]);
    penwright_kernels::ops::cross_entropy(logits.reshape([b * t, v]), targets)
}

/// At most `max_tokens` (0: no limit) of `rows`, whole rows taken at even strides so that
/// every part of the held-out text has its share.
fn evenly_within(rows: Vec<Vec<u32>>, max_tokens: usize) -> Vec<Vec<u32>> {
    let total: usize = rows.iter().map(Vec::len).sum();
    if max_tokens == 0 || total <= max_tokens || rows.is_empty() {
        return rows;
    }
    let per_row = total.div_ceil(rows.len());
    let keep = (max_tokens / per_row.max(1)).clamp(1, rows.len());
    let n = rows.len();
    let mut rows: Vec<Option<Vec<u32>>> = rows.into_iter().map(Some).collect();
    (0..keep)
        .filter_map(|i| rows[i * n / keep].take())
        .collect()
}

/// Held-out rows evaluated in one forward pass.
const EVAL_BATCH: usize = 4;

/// Held-out perplexity (no gradients).
fn heldout_ppl<M: Decoder>(
    net: &M,
    heldout: &[Vec<u32>],
    rope: Option<&Rope>,
    device: &Device,
) -> Result<f64> {
    let valid = net.valid();
    let inner = device.clone().inner();
    let (mut nll, mut n) = (0.0, 0usize);
    // rows of one length go through together: each packed weight is unpacked once per
    // batch rather than once per row
    let rows: Vec<&[u32]> = heldout
        .iter()
        .map(Vec::as_slice)
        .filter(|s| s.len() >= 2)
        .collect();
    for group in rows.chunk_by(|a, b| a.len() == b.len()) {
        for batch in group.chunks(EVAL_BATCH) {
            let loss = batch_loss(&valid, batch, rope, &inner);
            let v = loss
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| EngineError::Device(format!("{e:?}")))?[0];
            let predicted = batch.len() * (batch[0].len() - 1);
            nll += v as f64 * predicted as f64;
            n += predicted;
        }
    }
    if n == 0 {
        return Err(EngineError::Other(
            "no held-out text to evaluate (add more documents)".into(),
        ));
    }
    Ok((nll / n as f64).exp())
}

fn learning_rate(cfg: &FinetuneConfig, step: usize, total: usize) -> f64 {
    let warm = ((total as f64 * cfg.warmup).round() as usize).max(1);
    if step < warm {
        return cfg.learning_rate * (step + 1) as f64 / warm as f64;
    }
    let progress = (step - warm) as f64 / (total - warm).max(1) as f64;
    let min = cfg.learning_rate * 0.1;
    min + 0.5 * (cfg.learning_rate - min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// The order sequences are visited in: a seeded shuffle per epoch, so step k of a resumed
/// run sees the data step k of an uninterrupted run saw.
fn batch_for_step(n_seqs: usize, step: usize, rows_per_step: usize, seed: u64) -> Vec<usize> {
    let mut out = Vec::with_capacity(rows_per_step);
    let start = step * rows_per_step;
    for i in start..start + rows_per_step {
        let epoch = i / n_seqs;
        let mut order: Vec<usize> = (0..n_seqs).collect();
        order.shuffle(&mut StdRng::seed_from_u64(
            seed ^ (epoch as u64).wrapping_mul(0x9e3779b97f4a7c15),
        ));
        out.push(order[i % n_seqs]);
    }
    out
}

/// Where checkpoints and the final adapter go inside the output folder.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn read_state(out: &Path) -> Option<CheckpointState> {
    let text = std::fs::read_to_string(checkpoint_dir(out).join("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Runs (or, with `resume`, continues) a fine-tuning job; the adapter lands in `out`.
pub fn finetune(
    model_path: &Path,
    data: &[PathBuf],
    out: &Path,
    config: &FinetuneConfig,
    resume: bool,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(FinetuneEvent),
) -> Result<FinetuneSummary> {
    let started = Instant::now();
    let prior = if resume { read_state(out) } else { None };
    if resume && prior.is_none() {
        return Err(EngineError::Other(format!(
            "nothing to resume in {}",
            out.display()
        )));
    }
    let mut cfg = prior
        .as_ref()
        .map_or_else(|| config.clone(), |p| p.config.clone());
    cfg.validate()?;
    let chosen = crate::device::select(cfg.device)?;
    let device = match chosen.device.clone().autodiff() {
        d if cfg.gradient_checkpointing => d.gradient_checkpointing(),
        d => d,
    };
    check_precision(cfg.precision, &chosen.device, &chosen.name)?;
    on_event(FinetuneEvent::Device(TrainingDevice {
        name: chosen.name.clone(),
        reason: chosen.reason.clone(),
        precision: cfg.precision.as_str().into(),
    }));
    // the comparison at the end runs without autodiff
    let inference = chosen.clone();
    let selected = SelectedDevice {
        device: device.clone(),
        ..chosen
    };
    device.seed(cfg.seed);
    let loaded = load_model(model_path, selected, &mut |_| {})?;
    let tokenizer = loaded.tokenizer()?.clone();
    let model_config: ModelConfig = loaded.model.config.clone();
    if cfg.targets.is_empty() {
        cfg.targets = default_targets(model_config.architecture);
    }
    let ds = cfg.dataset(data, &tokenizer)?;
    on_event(FinetuneEvent::Dataset(ds.report.clone()));
    let train: Vec<Vec<u32>> = ds
        .train
        .iter()
        .filter(|s| s.len() == cfg.seq_len + 1)
        .cloned()
        .collect();
    if train.is_empty() {
        return Err(EngineError::Other(format!(
            "not enough training text: need at least {} tokens in the training documents",
            cfg.seq_len + 1
        )));
    }
    let rows_per_step = cfg.batch * cfg.grad_accum;
    let total_steps = match (cfg.steps, cfg.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => (e * train.len()).div_ceil(rows_per_step),
        (None, None) => train.len().div_ceil(rows_per_step),
    }
    .max(1);
    let rope = rope_for(&model_config);
    let network = loaded.model.network;
    let ctx = Ctx {
        cfg: &cfg,
        out,
        prior,
        total_steps,
        train: &train,
        heldout: &ds.heldout,
        rope: rope.as_ref(),
        device: &device,
        model_path,
        started,
        train_tokens: ds.report.train_tokens,
        cancel,
        on_cpu: inference.kind == crate::device::DeviceKind::Cpu,
    };
    let mut summary = with_network!(network, net => run(net, ctx, on_event))?;
    // the training graph is gone: the inference model fits where it was
    if let Some(passage) = ds.heldout.first() {
        summary.comparison = Some(compare(model_path, out, inference, passage)?);
    }
    Ok(summary)
}

struct Ctx<'a> {
    cfg: &'a FinetuneConfig,
    out: &'a Path,
    prior: Option<CheckpointState>,
    total_steps: usize,
    train: &'a [Vec<u32>],
    heldout: &'a [Vec<u32>],
    rope: Option<&'a Rope>,
    device: &'a Device,
    model_path: &'a Path,
    started: Instant,
    train_tokens: usize,
    cancel: &'a AtomicBool,
    /// Training runs on the CPU (flex).
    on_cpu: bool,
}

fn run<M: Decoder>(
    mut net: M,
    ctx: Ctx<'_>,
    on_event: &mut dyn FnMut(FinetuneEvent),
) -> Result<FinetuneSummary> {
    let cfg = ctx.cfg;
    let all = cfg.targets.iter().any(|t| t == "all-linear");
    let chosen_modules: Vec<String> = net
        .projections()
        .into_iter()
        .filter(|p| all || cfg.targets.iter().any(|t| t == p.name))
        .map(|p| p.module)
        .collect();
    if chosen_modules.is_empty() {
        return Err(EngineError::Config(format!(
            "no projection matches the targets {:?}",
            cfg.targets
        )));
    }
    store_base_as(&mut net, cfg.precision);
    if cfg.int8_gradients && ctx.on_cpu {
        for p in net.projections() {
            p.linear.weight.keep_transposed();
        }
        net.output_projection().weight.keep_transposed();
    }
    let base_ppl = match &ctx.prior {
        Some(p) => p.base_ppl,
        None => heldout_ppl(&net, ctx.heldout, ctx.rope, ctx.device)?,
    };
    if ctx.prior.is_none() {
        on_event(FinetuneEvent::Eval {
            step: 0,
            heldout_ppl: base_ppl,
        });
    }
    // factors: from the checkpoint when resuming, else fresh
    let mut chosen: HashMap<String, Option<(Tensor<2>, Tensor<2>)>> =
        chosen_modules.iter().map(|m| (m.clone(), None)).collect();
    if ctx.prior.is_some() {
        let adapter = crate::lora::Adapter::open(&checkpoint_dir(ctx.out))?;
        for module in &chosen_modules {
            let (a, b) = adapter_factors(&adapter, module)?;
            let upload = |t: HostTensor| crate::model::layers::upload(t.transposed(), ctx.device);
            chosen.insert(module.clone(), Some((upload(a), upload(b))));
        }
    }
    let mut net = attach_lora(
        net,
        chosen,
        cfg.rank,
        cfg.alpha / cfg.rank as f64,
        cfg.dropout,
    );
    let mut optim = AdamWConfig::new()
        .with_weight_decay(0.0)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(cfg.clip_norm)))
        .init();
    let (mut step, mut losses, prior_seconds) = match &ctx.prior {
        Some(p) => {
            optim = optim
                .load(checkpoint_dir(ctx.out).join("optimizer.bin"))
                .map_err(|e| {
                    EngineError::Other(format!("cannot read the optimizer checkpoint: {e:?}"))
                })?;
            (p.step, p.losses.clone(), p.seconds)
        }
        None => (0, Vec::new(), 0.0),
    };
    let adapter_config = AdapterConfig {
        r: cfg.rank,
        lora_alpha: cfg.alpha,
        lora_dropout: cfg.dropout,
        target_modules: if all {
            chosen_modules
                .iter()
                .map(|m| m.rsplit('.').next().unwrap_or_default().to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            cfg.targets.clone()
        },
        // PEFT's flag for GPT-2's Conv1D layers (it sets it itself when loading)
        fan_in_fan_out: M::CONV1D,
        use_rslora: false,
        use_dora: false,
        base_model_name_or_path: Some(ctx.model_path.display().to_string()),
    };
    let save_checkpoint = |net: &mut M,
                           optim: &ModuleOptimizer,
                           step: usize,
                           losses: &[f64],
                           seconds: f64|
     -> Result<PathBuf> {
        let tmp = ctx.out.join(".checkpoint.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        save_adapter(&tmp, &adapter_config, &adapter_tensors(net)?)?;
        optim
            .save(tmp.join("optimizer.bin"))
            .map_err(|e| EngineError::Other(format!("cannot save the optimizer state: {e:?}")))?;
        let state = CheckpointState {
            step,
            total_steps: ctx.total_steps,
            config: cfg.clone(),
            losses: losses.to_vec(),
            base_ppl,
            seconds,
        };
        crate::fs::atomic_write(
            &tmp.join("state.json"),
            serde_json::to_string_pretty(&state)
                .expect("json")
                .as_bytes(),
        )?;
        let dir = checkpoint_dir(ctx.out);
        let old = ctx.out.join(".checkpoint.old");
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(&dir, &old).map_err(|e| EngineError::io(&dir, e))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| EngineError::io(&dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(dir)
    };
    let session_start = Instant::now();
    let mut phases = StepPhases::default();
    let first_step = step;
    let tokens_per_step = rows_per_step(cfg) * cfg.seq_len;
    while step < ctx.total_steps {
        if ctx.cancel.load(Ordering::Relaxed) {
            save_checkpoint(
                &mut net,
                &optim,
                step,
                &losses,
                prior_seconds + session_start.elapsed().as_secs_f64(),
            )?;
            return Err(EngineError::Cancelled);
        }
        let lr = learning_rate(cfg, step, ctx.total_steps);
        let rows = batch_for_step(ctx.train.len(), step, rows_per_step(cfg), cfg.seed);
        // dropout masks drawn from a per-step seed: a resumed run draws what an
        // uninterrupted one drew at this step
        ctx.device
            .seed(cfg.seed ^ (step as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut accumulator = burn::optim::GradientsAccumulator::new();
        let mut step_loss = 0.0;
        for micro in rows.chunks(cfg.batch) {
            let batch: Vec<&[u32]> = micro.iter().map(|&i| ctx.train[i].as_slice()).collect();
            let started = Instant::now();
            let loss = batch_loss(&net, &batch, ctx.rope, ctx.device) / cfg.grad_accum as f64;
            step_loss +=
                loss.clone()
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| EngineError::Device(format!("{e:?}")))?[0] as f64;
            phases.forward += started.elapsed().as_secs_f64();
            let started = Instant::now();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            accumulator.accumulate(&net, grads);
            phases.backward += started.elapsed().as_secs_f64();
        }
        if !step_loss.is_finite() {
            // nothing trained past this point is worth keeping: no adapter is written
            return Err(EngineError::Other(format!(
                "training diverged at step {}: the loss is {step_loss}; try a lower learning rate (it is {})",
                step + 1,
                cfg.learning_rate
            )));
        }
        let started = Instant::now();
        net = optim.step(lr, net, accumulator.grads());
        phases.optimizer += started.elapsed().as_secs_f64();
        step += 1;
        losses.push(step_loss);
        let elapsed = session_start.elapsed().as_secs_f64();
        let done_here = step - first_step;
        let tokens_per_s = (done_here * tokens_per_step) as f64 / elapsed.max(1e-9);
        on_event(FinetuneEvent::Step {
            step,
            total_steps: ctx.total_steps,
            loss: step_loss,
            learning_rate: lr,
            tokens_per_s,
            eta_s: elapsed / done_here as f64 * (ctx.total_steps - step) as f64,
        });
        if cfg.eval_every > 0 && step % cfg.eval_every == 0 && step < ctx.total_steps {
            let ppl = heldout_ppl(&net, ctx.heldout, ctx.rope, ctx.device)?;
            on_event(FinetuneEvent::Eval {
                step,
                heldout_ppl: ppl,
            });
        }
        if cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 {
            let path = save_checkpoint(&mut net, &optim, step, &losses, prior_seconds + elapsed)?;
            on_event(FinetuneEvent::Checkpoint { step, path });
        }
    }
    // training throughput: the steps alone, not the final evaluation and saves
    let training_seconds = session_start.elapsed().as_secs_f64();
    let tuned_ppl = heldout_ppl(&net, ctx.heldout, ctx.rope, ctx.device)?;
    on_event(FinetuneEvent::Eval {
        step,
        heldout_ppl: tuned_ppl,
    });
    save_adapter(ctx.out, &adapter_config, &adapter_tensors(&mut net)?)?;
    save_checkpoint(
        &mut net,
        &optim,
        step,
        &losses,
        prior_seconds + session_start.elapsed().as_secs_f64(),
    )?;
    let seconds = ctx.started.elapsed().as_secs_f64();
    let trained = (step - first_step) * tokens_per_step;
    Ok(FinetuneSummary {
        steps: step,
        train_tokens: ctx.train_tokens,
        base_ppl,
        tuned_ppl,
        seconds,
        tokens_per_s: trained as f64 / training_seconds.max(1e-9),
        adapter: ctx.out.to_path_buf(),
        losses,
        comparison: None,
        phases,
    })
}

fn rows_per_step(cfg: &FinetuneConfig) -> usize {
    cfg.batch * cfg.grad_accum
}

fn adapter_factors(
    adapter: &crate::lora::Adapter,
    module: &str,
) -> Result<(HostTensor, HostTensor)> {
    adapter
        .factors(module)?
        .ok_or_else(|| EngineError::MissingTensor {
            path: adapter.dir.clone(),
            tensor: format!("{module}.lora_A.weight"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Network;
    use crate::model::llama::Llama;
    use burn::module::Module;

    #[test]
    fn held_out_rows_are_thinned_evenly_to_the_token_budget() {
        let rows: Vec<Vec<u32>> = (0..10).map(|i| vec![i; 100]).collect();
        let kept = evenly_within(rows.clone(), 300);
        assert_eq!(kept.iter().map(|r| r[0]).collect::<Vec<_>>(), [0, 3, 6]);
        assert_eq!(evenly_within(rows.clone(), 0).len(), 10);
        assert_eq!(evenly_within(rows.clone(), 5000).len(), 10);
        // a budget below one row still measures one
        assert_eq!(evenly_within(rows, 10).len(), 1);
    }

    #[test]
    fn a_writers_choices_change_only_what_they_name_of_the_preset() {
        let choices: TrainingChoices = serde_json::from_value(serde_json::json!({
            "preset": "thorough", "rank": 4, "device": "cpu", "precision": "bf16"
        }))
        .unwrap();
        let config = choices.config().unwrap();
        let thorough = FinetuneConfig::preset(TrainingPreset::Thorough);
        assert_eq!(config.rank, 4);
        assert_eq!(config.device, crate::device::DeviceChoice::Cpu);
        assert_eq!(config.precision, Precision::Bf16);
        assert_eq!(
            (config.steps, config.seq_len),
            (thorough.steps, thorough.seq_len)
        );
        for preset in TrainingPreset::ALL {
            assert!(FinetuneConfig::preset(preset).validate().is_ok());
        }
        // a value out of range is refused with its name, not clamped
        let err = TrainingChoices {
            batch: Some(0),
            ..Default::default()
        }
        .config()
        .unwrap_err();
        assert!(err.to_string().contains("batch is 0"), "{err}");
    }

    #[test]
    fn training_values_are_checked_in_one_place() {
        assert!(FinetuneConfig::default().validate().is_ok());
        let with = |f: &dyn Fn(&mut FinetuneConfig)| {
            let mut c = FinetuneConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(with(&|c| c.rank = 0).contains("rank is 0"));
        assert!(with(&|c| c.learning_rate = f64::NAN).contains("learning rate is NaN"));
        assert!(with(&|c| c.learning_rate = f64::INFINITY).contains("learning rate"));
        assert!(with(&|c| c.batch = 0).contains("batch is 0"));
        assert!(with(&|c| c.dropout = 2.0).contains("dropout is 2"));
        assert!(with(&|c| c.alpha = -1.0).contains("alpha"));
        assert!(with(&|c| c.seq_len = 2).contains("seq_len"));
        assert!(with(&|c| c.steps = Some(0)).contains("steps"));
        assert!(with(&|c| c.heldout_percent = 0).contains("held-out"));
    }

    #[test]
    fn learning_rate_warms_up_then_decays() {
        let cfg = FinetuneConfig {
            learning_rate: 1.0,
            warmup: 0.1,
            ..Default::default()
        };
        assert!((learning_rate(&cfg, 0, 100) - 0.1).abs() < 1e-9);
        assert!((learning_rate(&cfg, 9, 100) - 1.0).abs() < 1e-9);
        assert!(learning_rate(&cfg, 50, 100) < 1.0);
        assert!((learning_rate(&cfg, 100, 100) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn data_order_depends_only_on_seed_and_step() {
        let a: Vec<Vec<usize>> = (0..10).map(|s| batch_for_step(7, s, 3, 1)).collect();
        let b: Vec<Vec<usize>> = (0..10).map(|s| batch_for_step(7, s, 3, 1)).collect();
        assert_eq!(a, b);
        // each epoch visits every sequence once
        let first_epoch: std::collections::BTreeSet<usize> =
            (0..7).map(|i| batch_for_step(7, i, 1, 1)[0]).collect();
        assert_eq!(first_epoch.len(), 7);
    }

    // ---- on the tiny fixture models (HF transformers 4.46.3 random weights) ----------------

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn autodiff_cpu() -> SelectedDevice {
        SelectedDevice {
            device: Device::flex().autodiff(),
            kind: crate::device::DeviceKind::Cpu,
            name: "CPU (flex, autodiff)".into(),
            reason: "test".into(),
        }
    }

    fn tiny(dir: &Path) -> (Network, ModelConfig, Device) {
        tiny_on(dir, autodiff_cpu())
    }

    fn tiny_on(dir: &Path, selected: SelectedDevice) -> (Network, ModelConfig, Device) {
        let device = selected.device.clone();
        let loaded = load_model(dir, selected, &mut |_| {}).unwrap();
        (loaded.model.network, loaded.model.config, device)
    }

    fn tiny_llama() -> (Llama, ModelConfig, Device) {
        let (net, config, device) = tiny(&fixture("tiny-llama"));
        let Network::Llama(net) = net else {
            unreachable!()
        };
        (net, config, device)
    }

    fn to_vec(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    /// `rows` fixed token sequences of `len` ids inside tiny-llama's vocabulary: id `i` of row
    /// `r` is `(r·a + i·b + c) mod 1000`.
    fn token_rows(rows: u32, len: u32, [a, b, c]: [u32; 3]) -> Vec<Vec<u32>> {
        (0..rows)
            .map(|r| (0..len).map(|i| (r * a + i * b + c) % 1000).collect())
            .collect()
    }

    /// The loss of tiny-llama with LoRA factors `a` `[64, 4]`, `b` `[4, 64]` on layer 0's
    /// q_proj, and the gradients of A and B.
    fn loss_and_grads(rows: &[&[u32]], a: &[f32], b: &[f32]) -> (f64, Vec<f32>, Vec<f32>) {
        let (net, config, device) = tiny_llama();
        let rope = Rope::new(&config);
        let path = "model.layers.0.self_attn.q_proj".to_string();
        let factors = (
            Tensor::from_data(TensorData::new(a.to_vec(), [64, 4]), &device),
            Tensor::from_data(TensorData::new(b.to_vec(), [4, 64]), &device),
        );
        let net = attach_lora(
            net,
            HashMap::from([(path.clone(), Some(factors))]),
            4,
            2.0,
            0.0,
        );
        let loss = batch_loss(&net, rows, Some(&rope), &device);
        let value = loss.clone().into_data().try_into_vec::<f32>().unwrap()[0] as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let ga = grads.get::<2>(param_id(&format!("{path}.lora_a"))).unwrap();
        let gb = grads.get::<2>(param_id(&format!("{path}.lora_b"))).unwrap();
        (value, to_vec(ga), to_vec(gb))
    }

    #[test]
    fn lora_gradients_match_finite_differences() {
        let rows = token_rows(2, 12, [131, 37, 5]);
        let rows: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
        let mut rng = StdRng::seed_from_u64(3);
        let mut sample = |n: usize| -> Vec<f32> {
            use rand::Rng;
            (0..n).map(|_| rng.random_range(-0.5f32..0.5)).collect()
        };
        // B non-zero (unlike at the start of training), so A's gradient is not zero either
        let (a, b) = (sample(64 * 4), sample(4 * 64));
        let (_, grad_a, grad_b) = loss_and_grads(&rows, &a, &b);
        let eps = 1e-2f32;
        for (which, grad) in [("A", &grad_a), ("B", &grad_b)] {
            // the entries with the largest gradients: their differences are well above f32 noise
            let mut order: Vec<usize> = (0..grad.len()).collect();
            order.sort_by(|&i, &j| grad[j].abs().total_cmp(&grad[i].abs()));
            for &k in &order[..4] {
                let shifted = |delta: f32| {
                    let (mut a2, mut b2) = (a.clone(), b.clone());
                    if which == "A" {
                        a2[k] += delta;
                    } else {
                        b2[k] += delta;
                    }
                    loss_and_grads(&rows, &a2, &b2).0
                };
                let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps as f64);
                let analytic = grad[k] as f64;
                let rel = (numeric - analytic).abs() / analytic.abs().max(1e-6);
                eprintln!(
                    "d loss / d {which}[{k}]: autodiff {analytic:.6}, finite difference {numeric:.6}, rel {rel:.1e}"
                );
                assert!(
                    rel < 2e-2,
                    "d loss / d {which}[{k}]: autodiff {analytic:.6}, finite difference {numeric:.6} (rel {rel:.2e})"
                );
            }
        }
    }

    fn run_tiny(
        model: &Path,
        cfg: &FinetuneConfig,
        train: &[Vec<u32>],
        out: &Path,
    ) -> FinetuneSummary {
        let _one = seeded_rng();
        let mut selected = autodiff_cpu();
        if cfg.gradient_checkpointing {
            selected.device = selected.device.gradient_checkpointing();
        }
        let (net, config, device) = tiny_on(model, selected);
        let rope = rope_for(&config);
        device.seed(cfg.seed);
        let ctx = Ctx {
            cfg,
            out,
            prior: None,
            total_steps: cfg.steps.unwrap(),
            train,
            heldout: &train[..1],
            rope: rope.as_ref(),
            device: &device,
            model_path: model,
            started: Instant::now(),
            train_tokens: train.iter().map(Vec::len).sum(),
            cancel: &AtomicBool::new(false),
            on_cpu: true,
        };
        with_network!(net, net => run(net, ctx, &mut |_| {})).unwrap()
    }

    #[test]
    fn a_tiny_corpus_is_overfit() {
        // two fixed 16-token sequences, trained on again and again
        let train = token_rows(2, 17, [211, 53, 7]);
        let cfg = FinetuneConfig {
            targets: vec!["all-linear".into()],
            steps: Some(40),
            seq_len: 16,
            batch: 2,
            learning_rate: 1e-2,
            warmup: 0.05,
            checkpoint_every: 0,
            ..Default::default()
        };
        let out = tempfile::tempdir().unwrap();
        let summary = run_tiny(&fixture("tiny-llama"), &cfg, &train, out.path());
        let (first, last) = (summary.losses[0], *summary.losses.last().unwrap());
        eprintln!(
            "loss {first:.3} -> {last:.3}; held-out ppl {:.1} -> {:.1}",
            summary.base_ppl, summary.tuned_ppl
        );
        assert!(last < first / 2.0, "loss fell from {first} to only {last}");
        assert!(summary.tuned_ppl < summary.base_ppl / 2.0);
        // gradient checkpointing recomputes activations: the same training, step for step
        let checkpointed = run_tiny(
            &fixture("tiny-llama"),
            &FinetuneConfig {
                gradient_checkpointing: true,
                ..cfg.clone()
            },
            &train,
            tempfile::tempdir().unwrap().path(),
        );
        for (a, b) in summary.losses.iter().zip(&checkpointed.losses) {
            assert!(
                (a - b).abs() < 1e-4,
                "{:?} vs {:?}",
                summary.losses,
                checkpointed.losses
            );
        }
    }

    fn logits_vec(t: Tensor<3>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// The activation-space branch computes what merging `W + s·A·B` computes (the same
    /// adapter at training time and at generation time), and its dropout acts only while
    /// training.
    /// The device's seeded RNG is shared by the tests running in parallel: one test at a
    /// time draws from it (initial factors, dropout masks), or a seeded run is not repeatable.
    fn seeded_rng() -> std::sync::MutexGuard<'static, ()> {
        static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SEEDED.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn the_lora_branch_equals_the_merged_weights_and_drops_out_only_in_training() {
        let _one = seeded_rng();
        let (net, config, device) = tiny_llama();
        let rope = Rope::new(&config);
        let ids = ids_tensor(&[&[5, 17, 230, 41, 9, 77, 310, 2]], &device);
        let modules = [
            "model.layers.0.self_attn.q_proj",
            "model.layers.1.self_attn.v_proj",
        ];
        let mut rng = StdRng::seed_from_u64(11);
        let mut sample = |shape: [usize; 2]| -> Tensor<2> {
            use rand::Rng;
            let v: Vec<f32> = (0..shape[0] * shape[1])
                .map(|_| rng.random_range(-0.3f32..0.3))
                .collect();
            Tensor::from_data(TensorData::new(v, shape), &device)
        };
        let mut factors = HashMap::new();
        let mut merged_net = tiny_llama().0;
        for p in merged_net.projections() {
            if modules.contains(&p.module.as_str()) {
                let [d_in, d_out] = p.linear.dims();
                let (a, b) = (sample([d_in, 4]), sample([4, d_out]));
                let delta = a.clone().matmul(b.clone()) * 0.5;
                let merged = (p.linear.weight.dequantize() + delta.transpose()).detach();
                p.linear.weight = crate::model::layers::PackedWeight::from_tensor(merged);
                factors.insert(p.module.clone(), Some((a, b)));
            }
        }
        let net = attach_lora(net, factors, 4, 0.5, 0.5);
        let merged = logits_vec(merged_net.valid().logits(ids.clone().inner(), Some(&rope)));
        let branch = logits_vec(net.valid().logits(ids.clone().inner(), Some(&rope)));
        let diff = max_diff(&merged, &branch);
        assert!(diff < 1e-4, "branch vs merged: max |Δlogit| {diff}");
        // on the training device the branch's input is dropped out, differently each pass
        let first = logits_vec(net.logits(ids.clone(), Some(&rope)));
        let second = logits_vec(net.logits(ids, Some(&rope)));
        assert!(
            max_diff(&first, &branch) > 1e-3,
            "no dropout while training"
        );
        assert!(max_diff(&first, &second) > 1e-3, "the same mask twice");
    }

    #[test]
    fn the_cpu_computes_half_precisions_correctly() {
        let cpu = Device::flex();
        for precision in [Precision::F16, Precision::Bf16] {
            let err = check_precision(precision, &cpu, "CPU").unwrap();
            eprintln!("{}: relative error {err:.1e}", precision.as_str());
            assert!(
                err > 0.0,
                "{} computed exactly: not cast?",
                precision.as_str()
            );
        }
    }

    /// The frozen base in f16 or bf16 trains as f32 does, within those types' rounding.
    #[test]
    fn half_precision_training_follows_f32() {
        let train = token_rows(4, 17, [97, 31, 3]);
        let cfg = FinetuneConfig {
            targets: vec!["all-linear".into()],
            steps: Some(8),
            seq_len: 16,
            batch: 2,
            learning_rate: 5e-3,
            dropout: 0.0,
            checkpoint_every: 0,
            ..Default::default()
        };
        let model = fixture("tiny-llama");
        let full = run_tiny(&model, &cfg, &train, tempfile::tempdir().unwrap().path());
        for (precision, tol) in [(Precision::F16, 5e-3), (Precision::Bf16, 3e-2)] {
            let half = run_tiny(
                &model,
                &FinetuneConfig {
                    precision,
                    ..cfg.clone()
                },
                &train,
                tempfile::tempdir().unwrap().path(),
            );
            eprintln!(
                "f32 {:?}\n{} {:?}",
                full.losses,
                precision.as_str(),
                half.losses
            );
            for (a, b) in full.losses.iter().zip(&half.losses) {
                assert!(
                    (a - b).abs() / a < tol,
                    "{}: {:?} vs f32 {:?}",
                    precision.as_str(),
                    half.losses,
                    full.losses
                );
            }
            assert!(half.losses.last() < half.losses.first());
        }
    }

    /// tiny-llama as a Qwen2 model: the same weights plus (zero) q/k/v biases.
    fn write_tiny_qwen2(dir: &Path) {
        use safetensors::tensor::TensorView;
        let bytes = std::fs::read(fixture("tiny-llama/model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<(String, TensorView)> = st.tensors();
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("tiny-llama/config.json")).unwrap(),
        )
        .unwrap();
        let (heads, kv, hd) = (4usize, 2usize, 16usize);
        let zeros_q = vec![0u8; heads * hd * 4];
        let zeros_kv = vec![0u8; kv * hd * 4];
        for l in 0..2 {
            for (p, z) in [
                ("q_proj", &zeros_q),
                ("k_proj", &zeros_kv),
                ("v_proj", &zeros_kv),
            ] {
                tensors.push((
                    format!("model.layers.{l}.self_attn.{p}.bias"),
                    TensorView::new(safetensors::Dtype::F32, vec![z.len() / 4], z).unwrap(),
                ));
            }
        }
        std::fs::create_dir_all(dir).unwrap();
        let data = safetensors::serialize(tensors, None).unwrap();
        std::fs::write(dir.join("model.safetensors"), data).unwrap();
        let mut config = config;
        config["model_type"] = "qwen2".into();
        config["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]);
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    }

    #[test]
    fn exported_adapters_have_peft_keys_and_shapes() {
        // made by make_peft_keys.py with PEFT itself
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("peft_keys.json")).unwrap())
                .unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let qwen2 = scratch.path().join("tiny-qwen2");
        write_tiny_qwen2(&qwen2);
        let train: Vec<Vec<u32>> = vec![(0..9u32).map(|i| i * 7 + 3).collect()];
        let models = [
            ("llama", fixture("tiny-llama"), Architecture::Llama),
            ("qwen2", qwen2, Architecture::Qwen2),
            ("gpt2", fixture("tiny-gpt2"), Architecture::Gpt2),
        ];
        for (arch, dir, architecture) in models {
            for targets in ["default", "all-linear"] {
                let cfg = FinetuneConfig {
                    targets: if targets == "default" {
                        default_targets(architecture)
                    } else {
                        vec!["all-linear".into()]
                    },
                    steps: Some(1),
                    seq_len: 8,
                    batch: 1,
                    checkpoint_every: 0,
                    ..Default::default()
                };
                let out = scratch.path().join(format!("{arch}-{targets}"));
                run_tiny(&dir, &cfg, &train, &out);
                let bytes = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
                let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
                let ours: std::collections::BTreeMap<String, serde_json::Value> = st
                    .tensors()
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::json!(v.shape())))
                    .collect();
                let want = &reference[arch][targets];
                let theirs: std::collections::BTreeMap<String, serde_json::Value> =
                    serde_json::from_value(want["tensors"].clone()).unwrap();
                assert_eq!(
                    ours, theirs,
                    "{arch} {targets}: keys and shapes differ from PEFT's"
                );
                let config: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(out.join("adapter_config.json")).unwrap(),
                )
                .unwrap();
                assert_eq!(config["fan_in_fan_out"], want["fan_in_fan_out"], "{arch}");
                // and the engine loads it back onto its base model
                let adapter = crate::lora::Adapter::open(&out).unwrap();
                let mut model = load_model(
                    &dir,
                    crate::device::select(crate::device::DeviceChoice::Cpu).unwrap(),
                    &mut |_| {},
                )
                .unwrap()
                .model;
                let merged = crate::lora::apply_adapter(&mut model, &adapter).unwrap();
                assert_eq!(merged * 2, theirs.len(), "{arch} {targets}");
            }
        }
    }
}
