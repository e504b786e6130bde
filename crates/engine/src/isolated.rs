//! Work that an untrusted file can make unbounded, run in a child process under a memory
//! and CPU-time cap: rendering a model's chat template (a template can double a string
//! forty times in forty steps, which no step count catches) and reading a .docx, .pdf or
//! .html document (a parser can be made to allocate without end). Rust cannot recover from
//! a failed allocation, so the only safe place for such work is a process whose death
//! costs nothing: a refused template or a skipped document, never the app, the engine or
//! a fine-tuning job.
//!
//! The child is the `penwright` command line (`penwright isolated`, hidden), which each
//! front end names once with [`use_helper`]: the CLI names itself, the app the `penwright`
//! beside it. Without a helper (the engine as a library, its unit tests) the work runs in
//! the calling process, bounded only by the parsers' own limits.
//!
//! Protocol: the parent writes one [`Task`] as JSON to the child's stdin; the child sets
//! its limits, then prints one [`Reply`] JSON line per item of work.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chat::ChatTemplate;
use crate::{EngineError, Result};

/// The address space a child may use to check a chat template.
pub const TEMPLATE_MEMORY_BYTES: u64 = 1 << 30;
/// The CPU time a child may use to check a chat template.
pub const TEMPLATE_CPU_SECONDS: u64 = 10;
/// The address space a child may use to read documents: well above what the extractors'
/// own caps allow a document to unpack to (256 MB) and give (16 MB of text).
pub const EXTRACT_MEMORY_BYTES: u64 = 3 << 30;
/// The CPU time a child may spend on one document.
pub const EXTRACT_CPU_SECONDS_PER_FILE: u64 = 30;

static HELPER: OnceLock<PathBuf> = OnceLock::new();

/// Names the `penwright` binary that runs isolated work (once per process; later calls
/// are ignored).
pub fn use_helper(binary: PathBuf) {
    let _ = HELPER.set(binary);
}

/// The binary set with [`use_helper`], if any.
pub fn helper() -> Option<&'static Path> {
    HELPER.get().map(PathBuf::as_path)
}

/// One piece of isolated work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    /// Render a conversation of each shape Penwright sends through the template.
    CheckTemplate {
        source: String,
        bos_token: String,
        eos_token: String,
    },
    /// Read each document's text, in order.
    Extract { paths: Vec<PathBuf> },
}

/// What the child prints for one item of work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The template rendered every probe.
    TemplateOk,
    /// The text of the next document.
    Text(String),
    /// Why the template or the next document was refused.
    Refused(String),
}

/// The limits a child sets on itself before it reads its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpu_seconds: u64,
}

impl Task {
    fn limits(&self) -> Limits {
        match self {
            Task::CheckTemplate { .. } => Limits {
                memory_bytes: TEMPLATE_MEMORY_BYTES,
                cpu_seconds: TEMPLATE_CPU_SECONDS,
            },
            Task::Extract { paths } => Limits {
                memory_bytes: EXTRACT_MEMORY_BYTES,
                cpu_seconds: EXTRACT_CPU_SECONDS_PER_FILE * paths.len().max(1) as u64,
            },
        }
    }

    /// Does the work in this process, one reply per item.
    pub fn run_here(self, reply: &mut dyn FnMut(Reply)) {
        match self {
            Task::CheckTemplate {
                source,
                bos_token,
                eos_token,
            } => reply(
                match ChatTemplate::new(&source, &bos_token, &eos_token).and_then(|t| t.check()) {
                    Ok(()) => Reply::TemplateOk,
                    Err(e) => Reply::Refused(e.to_string()),
                },
            ),
            Task::Extract { paths } => {
                for path in paths {
                    reply(match crate::finetune::extract::extract_text(&path) {
                        Ok(text) => Reply::Text(text),
                        Err(reason) => Reply::Refused(reason),
                    });
                }
            }
        }
    }
}

/// The child's side (`penwright isolated`): limits itself, reads the task from stdin,
/// prints the replies to stdout.
pub fn serve_child() -> Result<()> {
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)
        .map_err(|e| EngineError::Other(format!("isolated task: {e}")))?;
    let task: Task = serde_json::from_str(&input)
        .map_err(|e| EngineError::Other(format!("isolated task: {e}")))?;
    limit_self(task.limits())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    task.run_here(&mut |reply| {
        if let Ok(line) = serde_json::to_string(&reply) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    });
    Ok(())
}

#[cfg(unix)]
fn limit_self(limits: Limits) -> Result<()> {
    let set = |resource, value: u64| {
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct it is given and nothing else
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(EngineError::Other(format!(
                "cannot limit the isolated process: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    };
    set(libc::RLIMIT_AS, limits.memory_bytes)?;
    set(libc::RLIMIT_CPU, limits.cpu_seconds)?;
    Ok(())
}

#[cfg(not(unix))]
fn limit_self(_: Limits) -> Result<()> {
    // no rlimit here: the child still takes any crash with it, and the parent's wall-clock
    // deadline stops one that runs on
    Ok(())
}

/// Runs `task` in a child of `helper`: one reply per item of work, in order. Items the
/// child never answered (it died on one, or gave no reply within `per_reply`) are missing
/// from the end.
fn run_in_child(helper: &Path, task: &Task, per_reply: Duration) -> Result<Vec<Reply>> {
    let spawn_err = |e: std::io::Error| {
        EngineError::Other(format!(
            "cannot start {} for isolated work: {e}",
            helper.display()
        ))
    };
    let mut child = Command::new(helper)
        .arg("isolated")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(spawn_err)?;
    let input = serde_json::to_vec(task).map_err(|e| EngineError::Other(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // a child that dies before reading everything closes the pipe: its replies say so
        let _ = stdin.write_all(&input);
    }
    let stdout = child.stdout.take().expect("stdout is piped");
    // the replies are read on a thread so that a child that hangs in a system call (which
    // uses no CPU time) is still stopped at the deadline
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(reply) = serde_json::from_str::<Reply>(&line) else {
                break;
            };
            if tx.send(reply).is_err() {
                break;
            }
        }
    });
    let mut replies = Vec::new();
    loop {
        match rx.recv_timeout(per_reply) {
            Ok(reply) => replies.push(reply),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                break;
            }
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    Ok(replies)
}

/// What ended a child that gave no answer for an item.
fn died(what: &str, limits: Limits) -> String {
    format!(
        "{what} needs more than {} MB of memory or {} s to process (it was stopped)",
        limits.memory_bytes >> 20,
        limits.cpu_seconds
    )
}

/// Checks a chat template by rendering each conversation shape Penwright sends, in a
/// child process when a helper is set: `Err` says why it is not used.
pub fn check_template(template: &ChatTemplate) -> Result<()> {
    let task = Task::CheckTemplate {
        source: template.source().to_string(),
        bos_token: template.bos_token().to_string(),
        eos_token: template.eos_token().to_string(),
    };
    let Some(helper) = helper() else {
        return template.check();
    };
    let limits = task.limits();
    let per_reply = Duration::from_secs(limits.cpu_seconds * 2 + 5);
    match run_in_child(helper, &task, per_reply)?.into_iter().next() {
        Some(Reply::TemplateOk) => Ok(()),
        Some(Reply::Refused(why)) => Err(EngineError::ChatTemplate(why)),
        Some(Reply::Text(_)) | None => Err(EngineError::ChatTemplate(died("the template", limits))),
    }
}

/// The text of each document (or why it was skipped), in order; .docx, .pdf and .html
/// files are read in a child process when a helper is set, plain text here.
pub fn extract_texts(paths: &[PathBuf]) -> Vec<std::result::Result<String, String>> {
    let helper = helper();
    let needs_child = |p: &PathBuf| {
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        matches!(ext.as_str(), "docx" | "pdf" | "html" | "htm")
    };
    let mut out: Vec<Option<std::result::Result<String, String>>> = vec![None; paths.len()];
    let mut isolated = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        if helper.is_some() && needs_child(p) {
            isolated.push(i);
        } else {
            out[i] = Some(crate::finetune::extract::extract_text(p));
        }
    }
    // one child reads them all; one that dies on a document is replaced for the rest
    let mut next = 0;
    while let Some(helper) = helper.filter(|_| next < isolated.len()) {
        let batch: Vec<PathBuf> = isolated[next..].iter().map(|&i| paths[i].clone()).collect();
        let task = Task::Extract { paths: batch };
        let per_reply = Duration::from_secs(EXTRACT_CPU_SECONDS_PER_FILE * 2);
        let replies = match run_in_child(helper, &task, per_reply) {
            Ok(r) => r,
            Err(e) => {
                for &i in &isolated[next..] {
                    out[i] = Some(Err(e.to_string()));
                }
                break;
            }
        };
        for reply in replies {
            let i = isolated[next];
            out[i] = Some(match reply {
                Reply::Text(t) => Ok(t),
                Reply::Refused(why) => Err(why),
                Reply::TemplateOk => Err("unexpected reply".into()),
            });
            next += 1;
            if next == isolated.len() {
                break;
            }
        }
        if next < isolated.len() {
            // the child died on this one
            let i = isolated[next];
            out[i] = Some(Err(died(
                "this document",
                Limits {
                    memory_bytes: EXTRACT_MEMORY_BYTES,
                    cpu_seconds: EXTRACT_CPU_SECONDS_PER_FILE,
                },
            )));
            next += 1;
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not read".into())))
        .collect()
}
