//! `penwright`: the command line over Penwright's engine. Thin: parses arguments, calls the
//! engine, prints text or JSON.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use penwright_engine::device::{DeviceChoice, select};
use penwright_engine::documents::{TextEncoding, read_document, read_document_as};
use penwright_engine::finetune::train::{FinetuneConfig, Precision, finetune};
use penwright_engine::installed;
use penwright_engine::loader::{
    LoadOptions, LoadedModel, ModelInfo, load_model_with, resolve_model,
};
use penwright_engine::machine::Fit;
use penwright_engine::model::LanguageModel;
use penwright_engine::remote::RemoteEndpoint;
use penwright_engine::sampler::SamplerConfig;
use penwright_engine::tasks::autocomplete::{Alternatives, AutocompleteSettings, SuggestionLength};
use penwright_engine::tasks::rewrite::{Instruction, Preset};
use penwright_engine::tasks::summarize::SummaryLength;
use penwright_engine::worker::{
    DeviceReport, EngineHandle, Event, Loaded, Prompt, TaskKind, request,
};
use penwright_kernels::GgmlType;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "penwright",
    version,
    about = "Penwright: a local writing assistant's engine from the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A .gguf file, a Hugging Face model folder, or a catalog name (default: the default model)
    #[arg(long)]
    model: Option<String>,
    /// auto, gpu or cpu
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// A LoRA adapter folder (PEFT format) applied to the model (complete, summarize,
    /// translate, generate)
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Quantize an unquantized (f32/f16/bf16) checkpoint as it loads: q8_0, q4_0 or q4_k
    #[arg(long, value_parser = parse_quantize)]
    quantize: Option<GgmlType>,
    /// Use a remote OpenAI-compatible server instead of a local model (its base URL, with
    /// /v1); the key comes from $PENWRIGHT_API_KEY (generate, complete, summarize, translate, rewrite)
    #[arg(long, requires = "remote_model", conflicts_with_all = ["model", "adapter", "quantize"])]
    endpoint: Option<String>,
    /// The remote server's model to use, with --endpoint
    #[arg(long, requires = "endpoint")]
    remote_model: Option<String>,
}

fn parse_quantize(s: &str) -> std::result::Result<GgmlType, String> {
    LoadOptions::parse_quantize(s).map_err(|e| e.to_string())
}

impl ModelArgs {
    fn remote(&self) -> Option<RemoteEndpoint> {
        Some(RemoteEndpoint {
            base_url: self.endpoint.clone()?,
            model: self.remote_model.clone()?,
            api_key: std::env::var("PENWRIGHT_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
        })
    }

    fn options(&self) -> LoadOptions {
        LoadOptions {
            quantize: self.quantize,
        }
    }
}

#[derive(Subcommand)]
enum FinetuneAction {
    /// Held-out perplexity of the base model and of the base with an adapter (one trained
    /// elsewhere, say), on held-out text: the export's heldout.jsonl or documents. Kept
    /// beside the adapter (measured.json). Prints {"basePpl","tunedPpl","tokens"}
    Measure {
        /// A .gguf file, a Hugging Face model folder, or a catalog name (default: the default model)
        #[arg(long)]
        model: Option<String>,
        /// auto, gpu or cpu
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// The adapter folder (PEFT format)
        #[arg(long)]
        adapter: PathBuf,
        /// Held-out text: .jsonl files as `finetune export` writes them, documents, folders
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Score at most this many tokens (0: all)
        #[arg(long, default_value_t = 8192)]
        max_tokens: usize,
    },
    /// Writes the documents, split by document as `finetune` splits them, as train.jsonl and
    /// heldout.jsonl, with an Axolotl config and a TRL + PEFT script for a GPU cluster; the
    /// adapter such a run writes imports back. Prints {"dir","trainDocuments",...}
    Export {
        /// Files and folders of documents (.txt, .md, .html, .pdf, .docx)
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// The folder to write
        #[arg(long)]
        out: PathBuf,
        /// The base model's Hugging Face id, as the trainer fetches it
        #[arg(long, default_value = "HuggingFaceTB/SmolLM2-135M-Instruct")]
        base_model: String,
        #[arg(long, default_value_t = 8)]
        rank: usize,
        #[arg(long, default_value_t = 16.0)]
        alpha: f64,
        #[arg(long, default_value_t = 0.05)]
        dropout: f64,
        #[arg(long, conflicts_with = "epochs")]
        steps: Option<usize>,
        #[arg(long)]
        epochs: Option<usize>,
        #[arg(long, default_value_t = 1024)]
        seq_len: usize,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 2e-4)]
        lr: f64,
        /// Modules to adapt (default q_proj,v_proj)
        #[arg(long, value_delimiter = ',')]
        targets: Vec<String>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Work on untrusted input under a memory and time cap (a task as JSON on stdin); run by
    /// Penwright itself, not by hand
    #[command(hide = true)]
    Isolated,
    /// Installs a catalog model (default: the default model), or a model from a Hugging Face
    /// repository (--repo, with --file for one of its .gguf files); checks checksums.
    /// An interrupted download resumes where it stopped.
    Fetch {
        name: Option<String>,
        /// A Hub repository id (owner/name); the endpoint comes from $PENWRIGHT_HF_ENDPOINT
        #[arg(long, conflicts_with = "name")]
        repo: Option<String>,
        /// The .gguf file of --repo to download (default: its safetensors model folder)
        #[arg(long, requires = "repo")]
        file: Option<String>,
    },
    /// Adds a .gguf file or Hugging Face folder on disk to the installed models (used in place)
    Import { path: PathBuf },
    /// Lists the installed models and the catalog's suggestions
    Models {
        #[arg(long)]
        json: bool,
    },
    /// Token ids of a text: {"ids":[...]}
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        text: String,
    },
    /// Logits of a sequence of token ids: {"ids","logits"} or {"ids","top"}
    Logits {
        #[command(flatten)]
        model: ModelArgs,
        /// Comma-separated token ids
        #[arg(long, value_delimiter = ',', required = true)]
        ids: Vec<u32>,
        /// Only the K largest logits per position, as [id, logit] pairs
        #[arg(long)]
        top: Option<usize>,
    },
    /// Perplexity of a text file: {"tokens","nll","perplexity"}
    Perplexity {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        file: PathBuf,
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        /// Score at most this many tokens
        #[arg(long)]
        max_tokens: Option<usize>,
    },
    /// Generates text, streamed; with --json one final object
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        prompt: String,
        /// Render the prompt as a user message through the model's chat template
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Penalty on tokens already seen in the last 64 (1.0 = off)
        #[arg(long, default_value_t = 1.1)]
        repeat_penalty: f32,
        #[arg(long)]
        json: bool,
    },
    /// Inline autocomplete at a cursor: {"completion","ttft_ms","total_ms","reused_tokens","prefilled_tokens"}
    /// (+ "alternatives" and "alternatives_ms" with --alternatives)
    Complete {
        #[command(flatten)]
        model: ModelArgs,
        /// Text before the cursor
        #[arg(long, conflicts_with_all = ["prefix_file", "replay"])]
        prefix: Option<String>,
        /// Text before the cursor, from a file
        #[arg(long)]
        prefix_file: Option<PathBuf>,
        /// Text after the cursor
        #[arg(long, default_value = "")]
        suffix: String,
        #[arg(long)]
        max_tokens: Option<usize>,
        /// words, sentence or paragraph
        #[arg(long, default_value = "sentence")]
        length: SuggestionLength,
        /// Give the model the text after the cursor (fill-in-the-middle, where it has the tokens)
        #[arg(long)]
        fim: bool,
        /// Up to N distinct suggestions: the most likely first, then sampled ones (seeded)
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
        alternatives: u16,
        /// Replays a typing session: one JSON string (a prefix state) per line, one session
        #[arg(long)]
        replay: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Summarizes a document: {"summary","chunks","input_tokens","seconds"}
    Summarize {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        file: PathBuf,
        /// The file's encoding: utf-8, or windows-1252 (latin-1) for older files
        #[arg(long, default_value = "utf-8")]
        encoding: TextEncoding,
        /// short, medium, long or a number of words
        #[arg(long, default_value = "medium")]
        length: SummaryLength,
        #[arg(long)]
        bullets: bool,
        #[arg(long)]
        json: bool,
    },
    /// Translates a Markdown document, keeping its structure: {"text","blocks","seconds"}
    Translate {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        file: PathBuf,
        /// The file's encoding: utf-8, or windows-1252 (latin-1) for older files
        #[arg(long, default_value = "utf-8")]
        encoding: TextEncoding,
        /// Target language code (fr, de, es, ...)
        #[arg(long)]
        to: String,
        /// Source language code (default: whatever the text is in)
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rewrites a Markdown document (or a selection saved as one) block by block, keeping its
    /// structure: {"text","blocks","kept","seconds"}
    Rewrite {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        file: PathBuf,
        /// The file's encoding: utf-8, or windows-1252 (latin-1) for older files
        #[arg(long, default_value = "utf-8")]
        encoding: TextEncoding,
        /// What to do, in your words ("make it sound friendlier")
        #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
        instruction: Option<String>,
        /// shorter, longer, formal, casual, simpler, grammar or active
        #[arg(long)]
        preset: Option<Preset>,
        /// 0: the most likely rewrite; another number: a different (sampled) one
        #[arg(long, default_value_t = 0)]
        attempt: u64,
        #[arg(long)]
        json: bool,
    },
    /// Fine-tunes a LoRA adapter on your documents (PEFT format); --json: progress lines, then
    /// {"steps","train_tokens","base_ppl","tuned_ppl","seconds","tokens_per_s","adapter",
    /// "losses","comparison":{"prompt","base","tuned"}}.
    /// `finetune export` writes the documents and a config for a cluster trainer instead.
    #[command(args_conflicts_with_subcommands = true)]
    Finetune {
        #[command(subcommand)]
        action: Option<FinetuneAction>,
        /// A .gguf file, a Hugging Face folder or a catalog name (default: the default model)
        #[arg(long)]
        model: Option<String>,
        /// Files and folders of documents (.txt, .md, .html, .pdf, .docx)
        #[arg(long, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Where the adapter (and its checkpoint) go
        #[arg(long)]
        out: Option<PathBuf>,
        /// Runs the job the app prepared in this folder (its job.json), printing its log
        /// lines as JSON
        #[arg(long, conflicts_with_all = ["model", "data", "out", "resume"])]
        job: Option<PathBuf>,
        #[arg(long, default_value_t = 8)]
        rank: usize,
        #[arg(long, default_value_t = 16.0)]
        alpha: f64,
        /// Dropout on the LoRA branches' input while training
        #[arg(long, default_value_t = 0.05)]
        dropout: f64,
        #[arg(long, conflicts_with = "epochs")]
        steps: Option<usize>,
        #[arg(long)]
        epochs: Option<usize>,
        #[arg(long, default_value_t = 256)]
        seq_len: usize,
        #[arg(long, default_value_t = 4)]
        batch: usize,
        #[arg(long, default_value_t = 2e-4)]
        lr: f64,
        /// Held-out perplexity every N steps (0: before and after only)
        #[arg(long, default_value_t = 0)]
        eval_every: usize,
        /// Measure held-out perplexity on at most this many tokens, taken evenly from the
        /// held-out documents (0: all of them)
        #[arg(long, default_value_t = 8192)]
        heldout_max_tokens: usize,
        /// Modules to adapt (default q_proj,v_proj; c_attn for GPT-2; all-linear)
        #[arg(long, value_delimiter = ',')]
        targets: Vec<String>,
        /// Save a checkpoint every N steps (and always at the end or on stop)
        #[arg(long, default_value_t = 50)]
        checkpoint_every: usize,
        /// Continue from the checkpoint in --out
        #[arg(long)]
        resume: bool,
        /// Train on the GPU (wgpu) or the CPU; auto as for inference
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Recompute activations in the backward pass: less memory, slower steps
        #[arg(long)]
        gradient_checkpointing: bool,
        /// Input gradients of the frozen weights through f32 products of their dequantized
        /// blocks instead of an 8-bit transposed copy (slower; the reference)
        #[arg(long)]
        f32_gradients: bool,
        /// Precision of the frozen base model (f32, f16, bf16); refused where the device
        /// does not compute it correctly
        #[arg(long, default_value = "f32")]
        precision: Precision,
        #[arg(long)]
        json: bool,
    },
    /// Serves the model over an OpenAI-compatible HTTP API (/v1/models, /v1/completions,
    /// /v1/chat/completions) until Ctrl-C. Every request needs `Authorization: Bearer KEY`.
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        /// The address to bind; anything but loopback needs an explicit --api-key
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// 0 picks a free port (printed on stderr)
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The key clients must send (default: $PENWRIGHT_API_KEY, else a new one, printed)
        #[arg(long)]
        api_key: Option<String>,
        /// Requests running or waiting at once; more get 429
        #[arg(long, default_value_t = 32)]
        max_queue: usize,
        /// The largest max_tokens a request may ask for
        #[arg(long, default_value_t = 2048)]
        max_tokens: usize,
    },
    /// Speed and memory of the model on this machine (JSON)
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Bench a random-weight model of a real shape instead, SHAPE:MIX with SHAPE one of
        /// smollm2-135m, smollm2-360m, smollm2-1.7b and MIX one of q8_0, q4_k_m, q4_1
        /// (written once under $PENWRIGHT_HOME/bench; the tokenizer is the default model's)
        #[arg(long, conflicts_with = "model")]
        synthetic: Option<String>,
        /// The GGUF whose tokenizer a --synthetic model takes (default: the default model)
        #[arg(long, requires = "synthetic")]
        template: Option<PathBuf>,
        /// Write the default model's metadata without its weights (a 2 MB --template) to
        /// this file and exit
        #[arg(long, conflicts_with_all = ["synthetic", "model"])]
        write_template: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn load(args: &ModelArgs) -> Result<LoadedModel> {
    if args.endpoint.is_some() {
        bail!(
            "--endpoint works with generate, complete, summarize, translate and rewrite; this command needs a local model"
        );
    }
    let path = resolve_model(args.model.as_deref())?;
    let device = select(args.device)?;
    eprintln!("penwright: device {} ({})", device.name, device.reason);
    let mut loaded = load_model_with(&path, device, args.options(), &mut |_| {})
        .with_context(|| format!("loading {}", path.display()))?;
    if let Some(dir) = &args.adapter {
        let adapter = penwright_engine::lora::Adapter::open(dir)?;
        let n = penwright_engine::lora::apply_adapter(&mut loaded.model, &adapter)?;
        eprintln!(
            "penwright: adapter {} applied to {n} projections",
            dir.display()
        );
    }
    Ok(loaded)
}

fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string(value).expect("json"));
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // templates and documents from untrusted files are checked in a child of this binary
    if let Ok(exe) = std::env::current_exe() {
        penwright_engine::isolated::use_helper(exe);
    }
    match cli.command {
        Command::Isolated => Ok(penwright_engine::isolated::serve_child()?),
        Command::Fetch { name, repo, file } => match repo {
            Some(repo) => fetch_repo(&repo, file),
            None => fetch(name.as_deref()),
        },
        Command::Import { path } => {
            let path = std::path::absolute(&path)?;
            let entry = installed::import_model(&penwright_models::models_dir(), &path)?;
            print_json(&serde_json::to_value(&entry)?);
            Ok(())
        }
        Command::Models { json } => models(json),
        Command::Tokenize { model, text } => {
            let loaded = load(&model)?;
            let ids = loaded.tokenizer()?.encode(&text, false)?;
            print_json(&json!({ "ids": ids }));
            Ok(())
        }
        Command::Logits { model, ids, top } => {
            let loaded = load(&model)?;
            let m = &loaded.model;
            let mut cache = m.new_cache(ids.len());
            let rows = LanguageModel::to_rows(m.forward_cached(&ids, &mut cache, true)?)?;
            match top {
                None => print_json(&json!({ "ids": ids, "logits": rows })),
                Some(k) => {
                    let top: Vec<Vec<(u32, f32)>> = rows
                        .iter()
                        .map(|row| {
                            let mut pairs: Vec<(u32, f32)> = row
                                .iter()
                                .enumerate()
                                .map(|(i, &l)| (i as u32, l))
                                .collect();
                            pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
                            pairs.truncate(k);
                            pairs
                        })
                        .collect();
                    print_json(&json!({ "ids": ids, "top": top }));
                }
            }
            Ok(())
        }
        Command::Perplexity {
            model,
            file,
            ctx,
            max_tokens,
        } => {
            let loaded = load(&model)?;
            let text = read_document(&file)?;
            let mut ids = loaded.tokenizer()?.encode_with_bos(&text, false)?;
            if let Some(n) = max_tokens {
                ids.truncate(n);
            }
            let report = penwright_engine::perplexity::perplexity(
                &loaded.model,
                &ids,
                ctx,
                &AtomicBool::new(false),
                &mut |done, total| eprint!("\rpenwright: window {done}/{total}"),
            )?;
            eprintln!();
            print_json(&serde_json::to_value(report)?);
            Ok(())
        }
        Command::Generate {
            model,
            prompt,
            chat,
            max_tokens,
            temperature,
            seed,
            repeat_penalty,
            json,
        } => generate(
            model,
            prompt,
            chat,
            max_tokens,
            SamplerConfig {
                temperature,
                seed,
                repetition_penalty: repeat_penalty,
                ..Default::default()
            },
            json,
        ),
        Command::Complete {
            model,
            prefix,
            prefix_file,
            suffix,
            max_tokens,
            length,
            fim,
            alternatives,
            replay,
            json,
        } => {
            let (engine, ..) = start_engine(&model)?;
            let mut settings = AutocompleteSettings::new(length, fim);
            if let Some(n) = max_tokens {
                settings.max_tokens = n;
            }
            let prefixes: Vec<String> = match (prefix, prefix_file, replay) {
                (Some(p), _, _) => vec![p],
                (None, Some(f), _) => vec![read_document(&f)?],
                (None, None, Some(f)) => read_document(&f)?
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| {
                        serde_json::from_str::<String>(l).with_context(|| {
                            format!("{}: each line must be a JSON string", f.display())
                        })
                    })
                    .collect::<Result<_>>()?,
                (None, None, None) => bail!("give --prefix, --prefix-file or --replay"),
            };
            for prefix in prefixes {
                let job = engine.submit(request::Complete {
                    prefix: prefix.clone(),
                    suffix: suffix.clone(),
                    settings: settings.clone(),
                });
                let c = job.finish_blocking(|_| {})?;
                let mut out = json!({
                    "completion": c.completion,
                    "ttft_ms": c.ttft_ms,
                    "total_ms": c.total_ms,
                    "reused_tokens": c.reused_tokens,
                    "prefilled_tokens": c.prefilled_tokens,
                });
                let mut all = vec![c.completion.clone()];
                if alternatives > 1 {
                    let started = std::time::Instant::now();
                    let job = engine.submit(request::CompleteAlternatives {
                        prefix,
                        suffix: suffix.clone(),
                        settings: settings.clone(),
                        want: Alternatives {
                            count: alternatives as usize - 1,
                            seed: 1,
                        },
                        exclude: vec![c.completion.clone()],
                    });
                    let found = job.finish_blocking(|_| {})?;
                    all.retain(|t| !t.trim().is_empty());
                    all.extend(found);
                    out["alternatives"] = json!(all);
                    out["alternatives_ms"] = json!(started.elapsed().as_secs_f64() * 1e3);
                }
                if json {
                    print_json(&out);
                } else {
                    println!("{}", all.join("\n---\n"));
                }
            }
            Ok(())
        }
        Command::Summarize {
            model,
            file,
            encoding,
            length,
            bullets,
            json,
        } => {
            let text = read_document_as(&file, encoding)?;
            let (engine, ..) = start_engine(&model)?;
            let started = std::time::Instant::now();
            let job = engine.submit(request::Summarize {
                text,
                length,
                bullets,
            });
            let s = job.finish_blocking(|e| stream_event(e, json))?;
            if json {
                print_json(&json!({
                    "summary": s.summary,
                    "chunks": s.chunks,
                    "input_tokens": s.input_tokens,
                    "seconds": started.elapsed().as_secs_f64(),
                }));
            } else {
                println!();
            }
            Ok(())
        }
        Command::Translate {
            model,
            file,
            encoding,
            to,
            from,
            json,
        } => {
            let text = read_document_as(&file, encoding)?;
            let (engine, ..) = start_engine(&model)?;
            let started = std::time::Instant::now();
            let job = engine.submit(request::Translate { text, to, from });
            let t = job.finish_blocking(|e| stream_event(e, json))?;
            if json {
                print_json(&json!({
                    "text": t.text,
                    "blocks": t.blocks,
                    "seconds": started.elapsed().as_secs_f64(),
                }));
            } else {
                println!("{}", t.text);
            }
            Ok(())
        }
        Command::Rewrite {
            model,
            file,
            encoding,
            instruction,
            preset,
            attempt,
            json,
        } => {
            let text = read_document_as(&file, encoding)?;
            let instruction = match (preset, instruction) {
                (Some(p), _) => Instruction::Preset(p),
                (None, Some(i)) => Instruction::Free(i),
                (None, None) => bail!("give --preset or --instruction"),
            };
            let (engine, ..) = start_engine(&model)?;
            let started = std::time::Instant::now();
            let job = engine.submit(request::Rewrite {
                text,
                instruction,
                attempt,
            });
            // the rewritten document is printed whole at the end, not streamed
            let r = job.finish_blocking(|e| {
                if !matches!(e, Event::Token(_)) {
                    stream_event(e, json)
                }
            })?;
            if r.kept > 0 {
                eprintln!(
                    "penwright: {} of {} blocks kept as they were (the model's answer was no usable rewrite: it changed the structure, ran far longer, or was chatter)",
                    r.kept, r.blocks
                );
            }
            if json {
                print_json(&json!({
                    "text": r.text,
                    "blocks": r.blocks,
                    "kept": r.kept,
                    "seconds": started.elapsed().as_secs_f64(),
                }));
            } else {
                println!("{}", r.text);
            }
            Ok(())
        }
        Command::Finetune {
            action:
                Some(FinetuneAction::Measure {
                    model,
                    device,
                    adapter,
                    data,
                    max_tokens,
                }),
            ..
        } => {
            use penwright_engine::finetune::measure;
            let path = resolve_model(model.as_deref())?;
            let device = select(device)?;
            eprintln!("penwright: device {} ({})", device.name, device.reason);
            let texts = measure::read_heldout(&data)?;
            let measured = measure::measure_adapter(
                &path,
                &adapter,
                device,
                &texts,
                max_tokens,
                &AtomicBool::new(false),
                &mut |p| {
                    eprint!(
                        "\rpenwright: {} model, window {}/{}",
                        p.model, p.done, p.total
                    )
                },
            )?;
            eprintln!();
            print_json(&serde_json::to_value(measured)?);
            Ok(())
        }
        Command::Finetune {
            action:
                Some(FinetuneAction::Export {
                    data,
                    out,
                    base_model,
                    rank,
                    alpha,
                    dropout,
                    steps,
                    epochs,
                    seq_len,
                    batch,
                    lr,
                    targets,
                }),
            ..
        } => {
            let config = FinetuneConfig {
                rank,
                alpha,
                dropout,
                steps,
                epochs,
                seq_len,
                batch,
                learning_rate: lr,
                targets,
                ..FinetuneConfig::default()
            };
            let summary =
                penwright_engine::finetune::export::export(&data, &out, &config, &base_model)?;
            for s in &summary.skipped {
                eprintln!("penwright: skipped {}: {}", s.path.display(), s.reason);
            }
            print_json(&serde_json::to_value(&summary)?);
            Ok(())
        }
        Command::Finetune {
            action: None,
            model,
            data,
            out,
            job,
            rank,
            alpha,
            dropout,
            steps,
            epochs,
            seq_len,
            batch,
            lr,
            eval_every,
            heldout_max_tokens,
            targets,
            checkpoint_every,
            resume,
            device,
            gradient_checkpointing,
            f32_gradients,
            precision,
            json,
        } => {
            let stop = stop_on_ctrl_c()?;
            if let Some(dir) = job {
                let summary = penwright_engine::finetune::job::run(&dir, &stop, &mut |line| {
                    println!("{}", serde_json::to_string(line).expect("json"));
                });
                return finetune_ended(summary.map(|_| ()), &dir);
            }
            let out = out.context("--out is required: the folder the adapter goes to")?;
            if data.is_empty() {
                bail!("--data is required: the documents to train on");
            }
            let path = resolve_model(model.as_deref())?;
            // the app's Stop button asks a background job through a file in --out
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            // a stale request of an earlier run
            let _ = std::fs::remove_file(out.join(penwright_engine::finetune::job::STOP_FILE));
            penwright_engine::finetune::job::watch_stop_file(&out, &stop);
            let config = FinetuneConfig {
                rank,
                alpha,
                steps,
                epochs,
                seq_len,
                batch,
                learning_rate: lr,
                eval_every,
                heldout_max_tokens,
                targets,
                checkpoint_every,
                device,
                gradient_checkpointing,
                int8_gradients: !f32_gradients,
                dropout,
                precision,
                ..Default::default()
            };
            let summary = finetune(&path, &data, &out, &config, resume, &stop, &mut |event| {
                if json {
                    println!("{}", serde_json::to_string(&event).expect("json"));
                } else {
                    eprintln!("penwright: {event:?}");
                }
            });
            let summary = summary.inspect(|summary| {
                // the last line of a job's log (finetune::job::JobLine::Summary)
                print_json(&serde_json::to_value(summary).expect("json"));
            });
            finetune_ended(summary.map(|_| ()), &out)
        }
        Command::Serve {
            model,
            host,
            port,
            api_key,
            max_queue,
            max_tokens,
        } => serve(&model, host, port, api_key, max_queue, max_tokens),
        Command::Bench {
            mut model,
            synthetic,
            template,
            write_template,
            json,
        } => {
            if let Some(out) = write_template {
                let bytes = penwright_engine::bench::synthetic::write_template(
                    &resolve_model(None)?,
                    &out,
                )?;
                eprintln!("penwright: wrote {} ({bytes} bytes)", out.display());
                return Ok(());
            }
            if let Some(spec) = synthetic {
                let template = match template {
                    Some(t) => t,
                    None => resolve_model(None)?,
                };
                model.model = Some(synthetic_model(&spec, &template)?.display().to_string());
            }
            let loaded = load(&model)?;
            let report = penwright_engine::bench::run(&loaded)?;
            if json {
                print_json(&serde_json::to_value(&report)?);
            } else {
                println!("{report:#?}");
            }
            Ok(())
        }
    }
}

/// The synthetic model `SHAPE:MIX`, written first if it is not there yet.
fn synthetic_model(spec: &str, template: &std::path::Path) -> Result<PathBuf> {
    use penwright_engine::bench::synthetic::{Mix, SHAPES, shape, write_model};
    let (shape_name, mix_name) = spec.split_once(':').unwrap_or((spec, "q4_k_m"));
    let Some(shape) = shape(shape_name) else {
        let known: Vec<&str> = SHAPES.iter().map(|s| s.name).collect();
        bail!("unknown shape `{shape_name}` (one of {})", known.join(", "));
    };
    let Some(mix) = Mix::parse(mix_name) else {
        bail!("unknown mix `{mix_name}` (q8_0, q4_k_m or q4_1)");
    };
    let dir = penwright_models::paths::bench_dir();
    let path = dir.join(format!("{}-{}.gguf", shape.name, mix.name()));
    if !path.exists() {
        std::fs::create_dir_all(&dir)?;
        let part = path.with_extension("gguf.part");
        eprintln!("penwright: writing {} (random weights)", path.display());
        write_model(template, shape, mix, &part)?;
        std::fs::rename(&part, &path)?;
    }
    Ok(path)
}

fn serve(
    model: &ModelArgs,
    host: std::net::IpAddr,
    port: u16,
    api_key: Option<String>,
    max_queue: usize,
    max_tokens: usize,
) -> Result<()> {
    let explicit_key = api_key.or_else(|| {
        std::env::var("PENWRIGHT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
    });
    if !host.is_loopback() && explicit_key.is_none() {
        bail!(
            "refusing to serve on {host} without a key: anyone on the network could use it; pass --api-key or set $PENWRIGHT_API_KEY"
        );
    }
    let (engine, _, info) = start_engine(model)?;
    let info = info.context("serve runs a local model: drop --endpoint")?;
    let api_key = explicit_key.unwrap_or_else(|| {
        let key = penwright_server::generate_key();
        eprintln!("penwright: API key {key}");
        key
    });
    let mut config = penwright_server::ServerConfig::new(api_key);
    config.max_queue = max_queue.max(1);
    config.max_tokens = max_tokens.max(1);
    let served = penwright_server::ServedModel {
        id: info.id(),
        context: info
            .context_length
            .min(penwright_engine::worker::SESSION_CONTEXT),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        let address = listener.local_addr()?;
        eprintln!(
            "penwright: serving {} at http://{address}/v1 (Ctrl-C stops)",
            served.id
        );
        eprintln!("penwright: {} — {}", served.id, info.name);
        let router = penwright_server::router(engine, served, config);
        penwright_server::serve(listener, router).await?;
        Ok(())
    })
}

/// A stop switch for training: Ctrl-C stops after the current step with a final
/// checkpoint; a second one quits.
fn stop_on_ctrl_c() -> Result<std::sync::Arc<AtomicBool>> {
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("penwright: stopping after this step (Ctrl-C again to quit now)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

/// How a training run ended: stopped (exit 130, the checkpoint in `out` resumes) or done.
fn finetune_ended(result: penwright_engine::Result<()>, out: &std::path::Path) -> Result<()> {
    match result {
        Err(penwright_engine::EngineError::Cancelled) => {
            eprintln!(
                "penwright: stopped; the checkpoint in {} continues with --resume",
                out.display()
            );
            std::process::exit(130);
        }
        other => Ok(other?),
    }
}

/// Starts the engine worker and loads the model on it; with --endpoint, connects it to the
/// remote engine instead (no device, no local model).
fn start_engine(
    model: &ModelArgs,
) -> Result<(EngineHandle, Option<DeviceReport>, Option<ModelInfo>)> {
    let engine = EngineHandle::spawn();
    if let Some(endpoint) = model.remote() {
        let m = engine
            .submit(request::UseRemote {
                endpoint,
                tasks: TaskKind::ALL.to_vec(),
            })
            .finish_blocking(|_| {})?;
        eprintln!(
            "penwright: remote model {} at {} (context {})",
            m.id,
            model.endpoint.as_deref().unwrap_or_default(),
            m.context.unwrap_or_default()
        );
        return Ok((engine, None, None));
    }
    let load = engine.submit(request::Load {
        model: model.model.clone(),
        device: model.device,
        options: model.options(),
    });
    let Loaded { device, info, .. } = load.finish_blocking(|_| {})?;
    eprintln!("penwright: device {} ({})", device.name, device.reason);
    if let Some(dir) = &model.adapter {
        let job = engine.submit(request::SetAdapter {
            adapter: Some(dir.clone()),
        });
        let merged = job.finish_blocking(|_| {})?;
        eprintln!(
            "penwright: adapter {} applied to {} projections",
            dir.display(),
            merged.merged_projections
        );
    }
    Ok((engine, Some(device), Some(info)))
}

/// Progress to stderr; streamed text to stdout unless the output is JSON.
fn stream_event(event: &Event, json: bool) {
    match event {
        Event::Progress { stage, done, total } => eprintln!("penwright: {stage} {done}/{total}"),
        Event::Token(t) if !json => {
            print!("{t}");
            let _ = std::io::stdout().flush();
        }
        _ => {}
    }
}

fn generate(
    model: ModelArgs,
    prompt: String,
    chat: bool,
    max_tokens: usize,
    sampler: SamplerConfig,
    json: bool,
) -> Result<()> {
    let (engine, device, _) = start_engine(&model)?;
    let job = engine.submit(request::Generate {
        prompt: if chat {
            Prompt::Chat(prompt)
        } else {
            Prompt::Text(prompt)
        },
        max_tokens,
        sampler,
        stop_strings: Vec::new(),
    });
    let mut stdout = std::io::stdout();
    let g = job.finish_blocking(|event| {
        if let (Event::Token(t), false) = (event, json) {
            let _ = write!(stdout, "{t}");
            let _ = stdout.flush();
        }
    })?;
    if json {
        print_json(&json!({
            "text": g.text,
            "prompt_tokens": g.stats.prompt_tokens,
            "generated_tokens": g.stats.generated_tokens,
            "prefill_tok_s": g.stats.prefill_tok_s,
            "decode_tok_s": g.stats.decode_tok_s,
            "device": device.as_ref().map_or("remote", |d| d.name.as_str()),
        }));
    } else {
        println!();
    }
    Ok(())
}

fn fetch(name: Option<&str>) -> Result<()> {
    let catalog = penwright_models::Catalog::embedded();
    let entry = match name {
        None => catalog.default_entry(),
        Some(n) => catalog
            .find(n)
            .with_context(|| format!("`{n}` is not in the catalog (see `penwright models`)"))?,
    };
    let path = penwright_models::fetch::ensure_installed(entry, &mut |event| {
        eprintln!("penwright: {event}");
    })?;
    println!("{}", path.display());
    Ok(())
}

fn fetch_repo(repo: &str, file: Option<String>) -> Result<()> {
    let request = installed::DownloadRequest::Repo {
        repo: repo.to_string(),
        revision: "main".into(),
        file,
    };
    let mut last_report = std::time::Instant::now();
    let entry = installed::download_model(
        &penwright_models::models_dir(),
        &penwright_models::HubClient::from_env(),
        &request,
        &mut |p| {
            if last_report.elapsed().as_millis() >= 500 {
                last_report = std::time::Instant::now();
                let total = p
                    .total
                    .map_or("?".into(), |t| format!("{:.1}", t as f64 / 1e6));
                eprintln!(
                    "penwright: {} {:.1} of {total} MB",
                    p.file,
                    p.done as f64 / 1e6
                );
            }
        },
        &AtomicBool::new(false),
    )?;
    println!("{}", entry.path.display());
    Ok(())
}

fn models(json: bool) -> Result<()> {
    let dir = penwright_models::models_dir();
    let mut rows = installed::installed_models(&dir)?;
    rows.extend(installed::catalog_suggestions(&dir));
    if json {
        let rows = rows
            .iter()
            .map(|m| {
                let mut row = serde_json::to_value(m)?;
                row["memory_estimate_bytes"] = json!(m.memory_bytes);
                row["fits"] = json!(m.fit.map(|f| f.fits.as_str()));
                Ok(row)
            })
            .collect::<Result<Vec<_>>>()?;
        print_json(&json!(rows));
        return Ok(());
    }
    let fits = |m: &installed::ModelEntry| match m.fit.map(|f| f.fits) {
        Some(Fit::Yes) => "fits this machine",
        Some(Fit::Tight) => "tight on this machine",
        Some(Fit::No) => "too large for this machine",
        None => "memory unknown",
    };
    for m in rows {
        let state = match (&m.problem, m.installed) {
            (Some(p), _) => format!("unusable: {p}"),
            (None, true) => format!(
                "installed, {:.0} MB, ~{:.0} MB to run, {}",
                m.size_bytes as f64 / 1e6,
                m.memory_bytes as f64 / 1e6,
                fits(&m)
            ),
            (None, false) => format!(
                "~{:.0} MB to run, {}",
                m.memory_bytes as f64 / 1e6,
                fits(&m)
            ),
        };
        println!(
            "{:<36} {:<8} {:<8} {}{}",
            m.name,
            m.architecture,
            m.quantization,
            state,
            if m.is_default { " (default)" } else { "" }
        );
    }
    Ok(())
}
