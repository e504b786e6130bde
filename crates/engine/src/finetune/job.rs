//! A fine-tuning job that outlives the window that started it: a separate `penwright
//! finetune` process writing its progress (one JSON object per line) to `job.jsonl` in the
//! adapter's folder. Any window can re-attach by reading that file; stopping is a request
//! file the process watches, answered with a final checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use super::train::{FinetuneConfig, FinetuneEvent, FinetuneSummary, TrainingDevice};
use crate::{EngineError, Result};

/// One line of a job's log (`job.jsonl`), exactly what `penwright finetune --json` prints:
/// progress events, then the summary.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum JobLine {
    Event(FinetuneEvent),
    Summary(FinetuneSummary),
}

impl JobLine {
    /// A line of the log; `None` for a line that is not one (a partial write).
    pub fn parse(line: &str) -> Option<JobLine> {
        serde_json::from_str(line).ok()
    }
}

/// What a window attached to a job hears: its progress, then how it ended.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum JobEvent {
    Training(FinetuneEvent),
    Ended(JobEnd),
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", content = "data", rename_all = "camelCase")]
pub enum JobEnd {
    Done(FinetuneSummary),
    Error { message: String },
}

impl From<JobLine> for JobEvent {
    fn from(line: JobLine) -> Self {
        match line {
            JobLine::Event(e) => JobEvent::Training(e),
            JobLine::Summary(s) => JobEvent::Ended(JobEnd::Done(s)),
        }
    }
}

/// The job the app knows about (`<adapters>/current-job.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub job_id: String,
    pub out: PathBuf,
    pub pid: u32,
    pub model: PathBuf,
    pub data: Vec<PathBuf>,
    pub config: FinetuneConfig,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LossPoint {
    pub step: usize,
    pub loss: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalPoint {
    pub step: usize,
    pub heldout_ppl: f64,
}

/// What a window shows when it (re-)attaches.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    pub job_id: String,
    /// running | stopped | done | failed
    pub state: &'static str,
    pub step: usize,
    pub total_steps: usize,
    pub history: Vec<LossPoint>,
    pub evals: Vec<EvalPoint>,
    pub summary: Option<FinetuneSummary>,
    pub error: Option<String>,
    /// Where it trains.
    pub device: Option<TrainingDevice>,
}

pub const STOP_FILE: &str = "stop-requested";

/// What a job process runs (`<out>/job.json`, read by `penwright finetune --job <out>`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    pub model: PathBuf,
    pub data: Vec<PathBuf>,
    pub config: FinetuneConfig,
    /// Continue from the checkpoint in the job's folder.
    pub resume: bool,
}

fn spec_path(out: &Path) -> PathBuf {
    out.join("job.json")
}

/// Runs the job in `out` (the job process's side of [`start`]): its spec, a stop request
/// (the file [`request_stop`] writes, or `stop` set by the caller) answered with a final
/// checkpoint, and each line of its log handed to `on_line`, the summary last.
pub fn run(
    out: &Path,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    on_line: &mut dyn FnMut(&JobLine),
) -> Result<FinetuneSummary> {
    let path = spec_path(out);
    let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
    let spec: JobSpec = serde_json::from_str(&text).map_err(|e| EngineError::Malformed {
        path: path.clone(),
        what: e.to_string(),
    })?;
    watch_stop_file(out, stop);
    let summary = super::train::finetune(
        &spec.model,
        &spec.data,
        out,
        &spec.config,
        spec.resume,
        stop,
        &mut |event| on_line(&JobLine::Event(event)),
    )?;
    on_line(&JobLine::Summary(summary.clone()));
    Ok(summary)
}

/// Sets `stop` once a stop request appears in `out` ([`start`] removes a stale one).
pub fn watch_stop_file(out: &Path, stop: &std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    let (flag, stop_file) = (std::sync::Arc::clone(stop), out.join(STOP_FILE));
    std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            if stop_file.exists() {
                flag.store(true, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
}

fn record_path(adapters: &Path) -> PathBuf {
    adapters.join("current-job.json")
}

pub fn log_path(out: &Path) -> PathBuf {
    out.join("job.jsonl")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether the process is still running (Linux: /proc; a zombie counts as ended).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().chars().next())
        })
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Starts `penwright finetune` as its own process group (closing the app does not end it).
/// Returns the record and the child (the caller reaps it).
pub fn start(
    penwright: &Path,
    adapters: &Path,
    model: &Path,
    data: &[PathBuf],
    name: &str,
    config: &FinetuneConfig,
    resume_out: Option<&Path>,
) -> Result<(JobRecord, std::process::Child)> {
    if let Some(r) = current(adapters)
        && alive(r.pid)
    {
        return Err(EngineError::Other(format!(
            "a fine-tuning job is already running ({})",
            r.job_id
        )));
    }
    let out = match resume_out {
        Some(o) => o.to_path_buf(),
        None => adapters.join(name),
    };
    std::fs::create_dir_all(&out).map_err(|e| EngineError::io(&out, e))?;
    let _ = std::fs::remove_file(out.join(STOP_FILE));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&out))
        .map_err(|e| EngineError::io(log_path(&out), e))?;
    let err = std::fs::File::create(out.join("job.log")).map_err(|e| EngineError::io(&out, e))?;
    // the whole run, as one typed file the job process reads back (no mirrored arguments)
    let spec = JobSpec {
        model: model.to_path_buf(),
        data: data.to_vec(),
        config: config.clone(),
        resume: resume_out.is_some(),
    };
    crate::fs::atomic_write(
        &spec_path(&out),
        serde_json::to_string_pretty(&spec)
            .expect("json")
            .as_bytes(),
    )?;
    let mut cmd = Command::new(penwright);
    cmd.arg("finetune").arg("--job").arg(&out);
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| EngineError::Other(format!("cannot start {}: {e}", penwright.display())))?;
    let record = JobRecord {
        job_id: format!("{name}-{}", now()),
        out,
        pid: child.id(),
        model: model.to_path_buf(),
        data: data.to_vec(),
        config: config.clone(),
    };
    std::fs::create_dir_all(adapters).map_err(|e| EngineError::io(adapters, e))?;
    crate::fs::atomic_write(
        &record_path(adapters),
        serde_json::to_string(&record).expect("json").as_bytes(),
    )?;
    Ok((record, child))
}

pub fn current(adapters: &Path) -> Option<JobRecord> {
    serde_json::from_str(&std::fs::read_to_string(record_path(adapters)).ok()?).ok()
}

/// Asks the job to stop after the current step (it saves a checkpoint first).
pub fn request_stop(record: &JobRecord) -> Result<()> {
    std::fs::write(record.out.join(STOP_FILE), b"").map_err(|e| EngineError::io(&record.out, e))
}

/// Reads the job's progress so far.
pub fn status(record: &JobRecord) -> JobStatus {
    let text = std::fs::read_to_string(log_path(&record.out)).unwrap_or_default();
    let mut s = JobStatus {
        job_id: record.job_id.clone(),
        state: "running",
        step: 0,
        total_steps: record.config.steps.unwrap_or(0),
        history: Vec::new(),
        evals: Vec::new(),
        summary: None,
        error: None,
        device: None,
    };
    for line in text.lines().filter_map(JobLine::parse) {
        match line {
            JobLine::Event(FinetuneEvent::Step {
                step,
                total_steps,
                loss,
                ..
            }) => {
                s.step = step;
                s.total_steps = total_steps;
                s.history.push(LossPoint { step, loss });
            }
            JobLine::Event(FinetuneEvent::Eval { step, heldout_ppl }) => {
                s.evals.push(EvalPoint { step, heldout_ppl })
            }
            JobLine::Event(FinetuneEvent::Device(d)) => s.device = Some(d),
            JobLine::Event(FinetuneEvent::Dataset(_) | FinetuneEvent::Checkpoint { .. }) => {}
            JobLine::Summary(summary) => s.summary = Some(summary),
        }
    }
    if !alive(record.pid) {
        s.state = if s.summary.is_some() {
            "done"
        } else if record.out.join(STOP_FILE).exists() {
            "stopped"
        } else {
            s.error = Some(failure_message(&record.out));
            "failed"
        };
    }
    s
}

/// Why a job that is gone ended without its summary, and what can be resumed: the error it
/// printed (an engine error, or a panic such as a device running out of memory), or, when
/// it printed none, that it was killed (the system's out-of-memory killer, or `kill -9`).
pub fn failure_message(out: &Path) -> String {
    let log = std::fs::read_to_string(out.join("job.log")).unwrap_or_default();
    let printed = log
        .lines()
        .rev()
        .find(|l| l.starts_with("Error") || l.contains("panicked"))
        .map(|l| l.trim_start_matches("Error: ").to_string());
    let checkpoint = std::fs::read_to_string(super::train::checkpoint_dir(out).join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["step"].as_u64());
    let what = printed.unwrap_or_else(|| {
        "the job was killed without a word (out of memory? the system's OOM killer ends the \
         largest process)"
            .into()
    });
    match checkpoint {
        Some(step) => format!("{what}. Its checkpoint at step {step} can be resumed."),
        None => format!("{what}. It had not saved a checkpoint yet: start it again."),
    }
}

/// An adapter on disk.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterEntry {
    pub name: String,
    pub path: PathBuf,
    pub base_ppl: Option<f64>,
    pub tuned_ppl: Option<f64>,
    pub created_at: u64,
}

/// Every finished adapter under `adapters` (folders with `adapter_config.json`).
pub fn list_adapters(adapters: &Path) -> Vec<AdapterEntry> {
    let Ok(entries) = std::fs::read_dir(adapters) else {
        return Vec::new();
    };
    let mut out: Vec<AdapterEntry> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("adapter_config.json").exists())
        .map(|p| {
            let summary = std::fs::read_to_string(log_path(&p)).ok().and_then(|t| {
                t.lines().rev().find_map(|l| match JobLine::parse(l) {
                    Some(JobLine::Summary(s)) => Some(s),
                    _ => None,
                })
            });
            let measured = super::measure::measured(&p);
            let created_at = std::fs::metadata(p.join("adapter_config.json"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            AdapterEntry {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                // Penwright's own runs say in their log; adapters trained elsewhere, once
                // measured, beside them
                base_ppl: summary
                    .as_ref()
                    .map(|s| s.base_ppl)
                    .or(measured.map(|m| m.base_ppl)),
                tuned_ppl: summary
                    .as_ref()
                    .map(|s| s.tuned_ppl)
                    .or(measured.map(|m| m.tuned_ppl)),
                path: p,
                created_at,
            }
        })
        .collect();
    out.sort_by_key(|a| std::cmp::Reverse(a.created_at));
    out
}

/// Adds a PEFT adapter trained elsewhere (a cluster trainer's output, see `finetune export`)
/// to `adapters`, so it is listed beside Penwright's own: it is opened first (a folder that is
/// no adapter is a clear error), then its config and safetensors are copied under a free
/// name. Pickled weights are never copied.
pub fn import_adapter(adapters: &Path, src: &Path) -> Result<AdapterEntry> {
    let adapter = crate::lora::Adapter::open(src)?;
    if adapter.config.r == 0 {
        return Err(EngineError::Config(format!(
            "{}: the adapter's rank r is 0",
            src.display()
        )));
    }
    let base = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "imported-adapter".into());
    let mut name = base.clone();
    let mut n = 1;
    while adapters.join(&name).exists() {
        n += 1;
        name = format!("{base}-{n}");
    }
    let dest = adapters.join(&name);
    std::fs::create_dir_all(&dest).map_err(|e| EngineError::io(&dest, e))?;
    let entries = std::fs::read_dir(src).map_err(|e| EngineError::io(src, e))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_file() && (file == "adapter_config.json" || file.ends_with(".safetensors")) {
            std::fs::copy(&path, dest.join(&file)).map_err(|e| EngineError::io(&path, e))?;
        }
    }
    list_adapters(adapters)
        .into_iter()
        .find(|a| a.path == dest)
        .ok_or_else(|| EngineError::Other(format!("{} was not listed", dest.display())))
}

#[cfg(test)]
mod import_tests {
    use super::*;

    #[test]
    fn an_adapter_trained_elsewhere_is_checked_copied_and_listed() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama-lora");
        let adapters = tempfile::tempdir().unwrap();
        let first = import_adapter(adapters.path(), &fixture).unwrap();
        assert_eq!(first.name, "tiny-llama-lora");
        assert!(first.path.join("adapter_model.safetensors").exists());
        // only the adapter's own files, and a second import gets a name of its own
        assert!(!first.path.join("ref_logits.json").exists());
        let second = import_adapter(adapters.path(), &fixture).unwrap();
        assert_eq!(second.name, "tiny-llama-lora-2");
        assert_eq!(list_adapters(adapters.path()).len(), 2);
        // a folder that is no adapter is refused, and nothing is added
        let empty = tempfile::tempdir().unwrap();
        assert!(import_adapter(adapters.path(), empty.path()).is_err());
        assert_eq!(list_adapters(adapters.path()).len(), 2);
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    #[test]
    fn a_failed_job_says_why_and_what_can_be_resumed() {
        let out = tempfile::tempdir().unwrap();
        // killed silently (OOM killer, kill -9) before any checkpoint
        std::fs::write(out.path().join("job.log"), "penwright: device CPU\n").unwrap();
        let msg = failure_message(out.path());
        assert!(
            msg.contains("killed") && msg.contains("start it again"),
            "{msg}"
        );
        // a device error after a checkpoint
        let ckpt = super::super::train::checkpoint_dir(out.path());
        std::fs::create_dir_all(&ckpt).unwrap();
        std::fs::write(ckpt.join("state.json"), r#"{"step": 25}"#).unwrap();
        std::fs::write(
            out.path().join("job.log"),
            "thread 'main' panicked at cubecl: out of memory allocating 2 GiB\n",
        )
        .unwrap();
        let msg = failure_message(out.path());
        assert!(
            msg.contains("out of memory") && msg.contains("step 25"),
            "{msg}"
        );
    }

    #[test]
    fn the_log_is_read_back_as_the_job_wrote_it() {
        let out = tempfile::tempdir().unwrap();
        let events = [
            FinetuneEvent::Device(TrainingDevice {
                name: "CPU".into(),
                reason: "auto".into(),
                precision: "f32".into(),
            }),
            FinetuneEvent::Step {
                step: 1,
                total_steps: 2,
                loss: 3.5,
                learning_rate: 1e-4,
                tokens_per_s: 100.0,
                eta_s: 1.0,
            },
            FinetuneEvent::Eval {
                step: 2,
                heldout_ppl: 20.0,
            },
        ];
        let mut log: String = events
            .iter()
            .map(|e| serde_json::to_string(&JobLine::Event(e.clone())).unwrap() + "\n")
            .collect();
        // a summary as older versions wrote it (no losses, no comparison), and a torn line
        log.push_str(r#"{"steps":2,"train_tokens":64,"base_ppl":30.0,"tuned_ppl":20.0,"seconds":1.5,"tokens_per_s":90.0,"adapter":"/a"}"#);
        log.push_str("\n{\"event\":\"st");
        std::fs::write(log_path(out.path()), log).unwrap();
        let record = JobRecord {
            job_id: "j".into(),
            out: out.path().to_path_buf(),
            pid: u32::MAX,
            model: PathBuf::from("/m.gguf"),
            data: Vec::new(),
            config: FinetuneConfig::default(),
        };
        let s = status(&record);
        assert_eq!(s.state, "done");
        assert_eq!((s.step, s.total_steps), (1, 2));
        assert_eq!(s.evals.len(), 1);
        assert_eq!(s.device.unwrap().name, "CPU");
        let summary = s.summary.unwrap();
        assert_eq!(summary.tuned_ppl, 20.0);
        assert!(summary.comparison.is_none());
        // the window hears the summary as "done", with the same fields
        let done = serde_json::to_value(JobEvent::from(JobLine::Summary(summary))).unwrap();
        assert_eq!(done["event"], "done");
        assert_eq!(done["data"]["base_ppl"], 30.0);
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;

    #[test]
    fn a_job_runs_from_its_spec_and_its_log_reads_back_typed() {
        let out = tempfile::tempdir().unwrap();
        let data = out.path().join("docs");
        std::fs::create_dir(&data).unwrap();
        let words = [
            "harbour", "lantern", "gull", "tide", "rope", "storm", "keeper", "ledger", "sail",
            "fog", "anchor", "bell",
        ];
        for i in 0..10 {
            // distinct documents (near-copies would be dropped as duplicates)
            let text: Vec<&str> = (0..150)
                .map(|j| words[(i * 7 + j * (i + 3)) % words.len()])
                .collect();
            std::fs::write(data.join(format!("{i}.txt")), text.join(" ")).unwrap();
        }
        let spec = JobSpec {
            model: crate::loader::resolve_model(None).unwrap(),
            data: vec![data],
            config: FinetuneConfig {
                steps: Some(1),
                seq_len: 16,
                batch: 1,
                device: crate::device::DeviceChoice::Cpu,
                ..FinetuneConfig::default()
            },
            resume: false,
        };
        std::fs::write(spec_path(out.path()), serde_json::to_string(&spec).unwrap()).unwrap();
        let mut log = String::new();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let summary = run(out.path(), &stop, &mut |line| {
            log.push_str(&serde_json::to_string(line).unwrap());
            log.push('\n');
        })
        .unwrap();
        // each line the job writes parses back as the value it was
        let lines: Vec<JobLine> = log.lines().map(|l| JobLine::parse(l).unwrap()).collect();
        assert!(matches!(
            lines.first(),
            Some(
                JobLine::Event(FinetuneEvent::Device(_))
                    | JobLine::Event(FinetuneEvent::Dataset(_))
            )
        ));
        let Some(JobLine::Summary(last)) = lines.last() else {
            panic!("the log does not end with the summary: {log}")
        };
        assert_eq!(last.tuned_ppl, summary.tuned_ppl);
        assert!(out.path().join("adapter_config.json").exists());
        // a folder without a spec is a clear error
        let empty = tempfile::tempdir().unwrap();
        let err = run(empty.path(), &stop, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("job.json"), "{err}");
    }
}
