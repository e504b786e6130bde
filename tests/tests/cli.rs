//! The `penwright` CLI on the real default model (SmolLM2-135M-Instruct Q4_1), against
//! llama.cpp's reference numbers for the same file.

use penwright_e2e::{default_model, penwright, penwright_json, repo_root};

fn fixture(name: &str) -> serde_json::Value {
    let path = repo_root().join("crates/engine/tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn logits_agree_with_llama_cpp_on_the_default_model() {
    default_model();
    let reference = fixture("smollm2-llamacpp-logits.json");
    let ids: Vec<String> = reference["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let out = penwright_json(&[
        "logits",
        "--device",
        "cpu",
        "--ids",
        &ids.join(","),
        "--top",
        "5",
    ]);
    let top = out["top"].as_array().unwrap();
    assert_eq!(top.len(), ids.len());
    let mut agree = 0;
    let mut max_diff: f64 = 0.0;
    for (pos, row) in top.iter().enumerate() {
        let ours = &row[0];
        let theirs = &reference["positions"][pos]["top5"][0];
        if ours[0] == theirs[0] {
            agree += 1;
            max_diff =
                max_diff.max((ours[1].as_f64().unwrap() - theirs[1].as_f64().unwrap()).abs());
        }
    }
    eprintln!("top-1 agreement {agree}/32, max |Δ top logit| where agreeing {max_diff:.3}");
    // 8-bit activations flip two near-ties of the 32 (see crates/engine/tests/parity_smollm2.rs)
    assert!(agree >= 30, "top-1 agreement with llama.cpp: {agree}/32");
    assert!(
        max_diff < 1.6,
        "top logits differ from llama.cpp by {max_diff}"
    );
}

#[test]
fn tokenize_matches_llama_cpp() {
    default_model();
    let reference = fixture("smollm2-tokenizer-ref.json");
    for case in reference["cases"].as_array().unwrap().iter().take(8) {
        let text = case["text"].as_str().unwrap();
        let out = penwright_json(&["tokenize", "--device", "cpu", "--text", text]);
        assert_eq!(out["ids"], case["ids"], "{text:?}");
    }
}

#[test]
fn greedy_generation_is_deterministic_and_sensible() {
    default_model();
    let args = [
        "generate",
        "--device",
        "cpu",
        "--chat",
        "--prompt",
        "Write a haiku about autumn.",
        "--max-tokens",
        "48",
        "--json",
    ];
    let a = penwright_json(&args);
    let b = penwright_json(&args);
    let text = a["text"].as_str().unwrap();
    eprintln!("haiku: {text}");
    assert_eq!(
        a["text"], b["text"],
        "greedy decoding must be deterministic"
    );
    assert!(a["generated_tokens"].as_u64().unwrap() > 5);
    assert!(text.split_whitespace().count() >= 5, "{text:?}");
    assert!(a["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(a["device"].as_str().unwrap().contains("CPU"));
}

#[test]
fn perplexity_of_prose_is_finite_and_plausible() {
    default_model();
    let file = repo_root().join("tests/data/moby-dick-ch1.txt");
    let out = penwright_json(&[
        "perplexity",
        "--device",
        "cpu",
        "--file",
        file.to_str().unwrap(),
        "--ctx",
        "256",
        "--max-tokens",
        "768",
    ]);
    let ppl = out["perplexity"].as_f64().unwrap();
    eprintln!("perplexity {out}");
    assert_eq!(out["tokens"].as_u64().unwrap(), 765);
    assert!(ppl > 2.0 && ppl < 200.0, "perplexity {ppl}");
}

#[test]
fn a_truncated_model_file_is_a_clear_error() {
    let model = default_model();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.gguf");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let out = penwright(&[
        "tokenize",
        "--device",
        "cpu",
        "--model",
        bad.to_str().unwrap(),
        "--text",
        "hi",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated") && err.contains("broken.gguf"),
        "{err}"
    );
    let pickle = dir.path().join("pytorch_model.bin");
    std::fs::write(&pickle, b"not loaded").unwrap();
    let out = penwright(&[
        "tokenize",
        "--model",
        pickle.to_str().unwrap(),
        "--text",
        "hi",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("pickle"), "{err}");
}

#[test]
fn a_chat_template_that_needs_unbounded_memory_is_refused_and_chatml_stands_in() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("hostile-template.gguf");
    // an allocation failure cannot be caught: rendered in the engine's process, it would
    // abort it
    penwright_e2e::with_chat_template(penwright_e2e::TEMPLATE_BOMB, &model);
    let out = penwright(&[
        "generate",
        "--device",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--chat",
        "--prompt",
        "Say hello.",
        "--max-tokens",
        "4",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("chat template is not used")
            && err.contains("needs more than 1024 MB of memory")
            && err.contains("ChatML stands in"),
        "{err}"
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(reply["generated_tokens"].as_u64().unwrap() > 0, "{reply}");
    // an import says so at once (in a home of its own: the library is not touched)
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(penwright_e2e::binary("penwright"))
        .env("PENWRIGHT_HOME", home.path())
        .args(["import", model.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        entry["templateNote"]
            .as_str()
            .is_some_and(|n| n.contains("needs more than 1024 MB") && n.contains("ChatML")),
        "{entry}"
    );
}

#[test]
fn documents_that_need_a_parser_are_read_in_a_child_process_and_bad_ones_skipped() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..4 {
        std::fs::write(
            src.path().join(format!("page{i}.html")),
            format!("<html><body><h1>Page {i}</h1><p>The harpooneer number {i} sharpened his iron by the stove.</p></body></html>"),
        )
        .unwrap();
    }
    std::fs::write(
        src.path().join("notes.txt"),
        "Plain notes about the voyage.",
    )
    .unwrap();
    std::fs::write(
        src.path().join("broken.docx"),
        b"PK\x03\x04 not really a zip",
    )
    .unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let summary = penwright_json(&[
        "finetune",
        "export",
        "--data",
        src.path().to_str().unwrap(),
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    assert_eq!(
        summary["trainDocuments"].as_u64().unwrap() + summary["heldoutDocuments"].as_u64().unwrap(),
        5,
        "{summary}"
    );
    let skipped = summary["skipped"].as_array().unwrap();
    assert!(
        skipped.len() == 1
            && skipped[0]["path"]
                .as_str()
                .unwrap()
                .ends_with("broken.docx")
            && skipped[0]["reason"]
                .as_str()
                .unwrap()
                .contains("not a readable .docx"),
        "{summary}"
    );
    let written = ["train.jsonl", "heldout.jsonl"]
        .map(|f| std::fs::read_to_string(out_dir.path().join(f)).unwrap())
        .concat();
    for i in 0..4 {
        assert!(
            written.contains(&format!("The harpooneer number {i} sharpened")),
            "{written}"
        );
    }
}

#[test]
fn a_non_utf8_document_is_refused_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("latin1.txt");
    std::fs::write(&f, b"na\xefve").unwrap();
    let out = penwright(&[
        "summarize",
        "--device",
        "cpu",
        "--file",
        f.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not UTF-8") && err.contains("offset 2"),
        "{err}"
    );
    // told it is an older file, the command reads it as Windows-1252
    std::fs::write(
        &f,
        b"The na\xefve caf\xe9 owner served cr\xe8me br\xfbl\xe9e to every guest.",
    )
    .unwrap();
    let summary = penwright_json(&[
        "summarize",
        "--device",
        "cpu",
        "--file",
        f.to_str().unwrap(),
        "--encoding",
        "latin-1",
        "--length",
        "short",
        "--json",
    ]);
    assert!(summary["input_tokens"].as_u64().unwrap() > 5, "{summary}");
}

#[test]
fn complete_offers_distinct_alternatives_and_honours_the_length() {
    default_model();
    let prefix = "It was a dark and stormy night, and";
    let out = penwright_json(&[
        "complete",
        "--device",
        "cpu",
        "--prefix",
        prefix,
        "--alternatives",
        "3",
        "--json",
    ]);
    let all: Vec<&str> = out["alternatives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    eprintln!("alternatives: {all:?} in {} ms", out["alternatives_ms"]);
    assert!(all.len() >= 2, "{all:?}");
    assert_eq!(all[0], out["completion"].as_str().unwrap());
    let mut distinct = all.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), all.len(), "{all:?}");
    let words = penwright_json(&[
        "complete", "--device", "cpu", "--prefix", prefix, "--length", "words", "--json",
    ]);
    let n = words["completion"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .count();
    assert!((1..=4).contains(&n), "{words}");
}

#[test]
fn rewrite_keeps_the_markdown_and_says_how_long_it_took() {
    default_model();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("notes.md");
    let doc = "# Launch\n\nThe meeting was attended by all of the team members and a decision was made by them to postpone the launch until the new design is finished.\n\n```sh\nmake launch\n```\n";
    std::fs::write(&f, doc).unwrap();
    let file = f.to_str().unwrap();
    let out = penwright_json(&[
        "rewrite", "--device", "cpu", "--file", file, "--preset", "shorter", "--json",
    ]);
    let text = out["text"].as_str().unwrap();
    eprintln!("rewritten: {text}");
    assert!(out["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(out["blocks"], 2);
    assert!(text.starts_with("# "), "{text}");
    assert!(text.ends_with("\n\n```sh\nmake launch\n```\n"), "{text}");
    assert_ne!(text, doc);
    // a free instruction works too; an unknown preset or no instruction is a clear error
    let free = penwright_json(&[
        "rewrite",
        "--device",
        "cpu",
        "--file",
        file,
        "--instruction",
        "make it cheerful",
        "--json",
    ]);
    assert!(
        free["text"]
            .as_str()
            .unwrap()
            .contains("```sh\nmake launch\n```")
    );
    let bad = penwright(&[
        "rewrite", "--device", "cpu", "--file", file, "--preset", "louder",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("shorter, longer"),
        "{err}"
    );
    let none = penwright(&["rewrite", "--device", "cpu", "--file", file]);
    assert!(!none.status.success());
}

#[test]
fn finetune_writes_a_peft_adapter_that_perplexity_loads() {
    default_model();
    let data = tempfile::tempdir().unwrap();
    penwright_e2e::write_moby_dick_parts(data.path());
    let out = tempfile::tempdir().unwrap();
    let adapter = out.path().join("adapter");
    let summary = penwright_json(&[
        "finetune",
        "--data",
        data.path().to_str().unwrap(),
        "--out",
        adapter.to_str().unwrap(),
        "--steps",
        "3",
        "--seq-len",
        "32",
        "--batch",
        "1",
        "--lr",
        "1e-3",
        "--json",
    ]);
    eprintln!("finetune: {summary}");
    assert_eq!(summary["steps"], 3);
    let (base, tuned) = (
        summary["base_ppl"].as_f64().unwrap(),
        summary["tuned_ppl"].as_f64().unwrap(),
    );
    assert!(base.is_finite() && tuned.is_finite() && base > 1.0 && tuned > 1.0);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    assert!(adapter.join("adapter_model.safetensors").exists());
    let file = data.path().join("part0.md");
    let scored = penwright_json(&[
        "perplexity",
        "--device",
        "cpu",
        "--file",
        file.to_str().unwrap(),
        "--ctx",
        "64",
        "--max-tokens",
        "128",
        "--adapter",
        adapter.to_str().unwrap(),
    ]);
    assert!(scored["perplexity"].as_f64().unwrap().is_finite());

    // the same adapter as one trained elsewhere: measured base → tuned on held-out text
    // given as an export's heldout.jsonl, and kept beside it
    // (one line of single spaces: what the held-out reader keeps of it is the same text)
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let heldout = out.path().join("heldout.jsonl");
    std::fs::write(
        &heldout,
        format!("{}\n", serde_json::json!({ "text": text })),
    )
    .unwrap();
    let same_text = out.path().join("heldout.txt");
    std::fs::write(&same_text, &text).unwrap();
    let measured = penwright_json(&[
        "finetune",
        "measure",
        "--device",
        "cpu",
        "--adapter",
        adapter.to_str().unwrap(),
        "--data",
        heldout.to_str().unwrap(),
        "--max-tokens",
        "256",
    ]);
    eprintln!("measured: {measured}");
    let (base, tuned) = (
        measured["basePpl"].as_f64().unwrap(),
        measured["tunedPpl"].as_f64().unwrap(),
    );
    assert_eq!(measured["tokens"], 255);
    assert!((tuned - base).abs() > 1e-6, "the adapter changed nothing");
    // the same figures `perplexity` gives on the same tokens, without and with the adapter
    let plain = |adapter: Option<&std::path::Path>| {
        let mut args = vec![
            "perplexity",
            "--device",
            "cpu",
            "--file",
            same_text.to_str().unwrap(),
            "--max-tokens",
            "256",
        ];
        if let Some(a) = adapter {
            args.extend(["--adapter", a.to_str().unwrap()]);
        }
        penwright_json(&args)["perplexity"].as_f64().unwrap()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b;
    assert!(close(base, plain(None)), "base {base}");
    assert!(close(tuned, plain(Some(&adapter))), "tuned {tuned}");
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(adapter.join("measured.json")).unwrap())
            .unwrap();
    assert_eq!(kept, measured);
}

/// `kill -9` in the middle of a run, then `--resume`: the loss curve is the one of a run that
/// was never interrupted.
#[test]
fn finetune_resumed_after_kill_follows_the_uninterrupted_loss_curve() {
    default_model();
    let data = tempfile::tempdir().unwrap();
    penwright_e2e::write_moby_dick_parts(data.path());
    let args = |out: &std::path::Path| -> Vec<String> {
        [
            "finetune",
            "--data",
            data.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "4",
            "--seq-len",
            "24",
            "--batch",
            "1",
            "--lr",
            "1e-3",
            // dropout draws masks every step: a resumed run must draw the same ones
            "--dropout",
            "0.3",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let losses = |stdout: &str| -> Vec<f64> {
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "step")
            .map(|v| v["data"]["loss"].as_f64().unwrap())
            .collect()
    };
    // uninterrupted, checkpoint every 2 steps (the default 50 would never fire)
    let whole = tempfile::tempdir().unwrap();
    let mut a = args(whole.path());
    a.extend(["--checkpoint-every".into(), "2".into()]);
    let out = penwright_e2e::penwright(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = losses(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(reference.len(), 4);

    // killed with SIGKILL right after its first checkpoint
    let killed = tempfile::tempdir().unwrap();
    let mut k = args(killed.path());
    k.extend(["--checkpoint-every".into(), "2".into()]);
    let mut child = std::process::Command::new(penwright_e2e::binary("penwright"))
        .args(&k)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("\"checkpoint\"") {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    let _ = child.wait();
    let before = losses(&seen.join("\n"));
    assert_eq!(before.len(), 2, "{seen:?}");
    let mut r = args(killed.path());
    r.push("--resume".into());
    let out = penwright_e2e::penwright(&r.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = losses(&String::from_utf8_lossy(&out.stdout));
    let resumed: Vec<f64> = before.iter().chain(&after).copied().collect();
    eprintln!("uninterrupted {reference:?}\nresumed       {resumed:?}");
    assert_eq!(resumed.len(), 4);
    for (x, y) in reference.iter().zip(&resumed) {
        assert!(
            (x - y).abs() < 1e-4,
            "loss curves differ: {reference:?} vs {resumed:?}"
        );
    }
}

/// The app's Stop button (a stop request in the job's folder) ends the run after the current
/// step with a final checkpoint, and `--resume` finishes it.
#[test]
fn a_stop_request_ends_finetuning_with_a_checkpoint_that_resumes() {
    default_model();
    let data = tempfile::tempdir().unwrap();
    penwright_e2e::write_moby_dick_parts(data.path());
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("adapter");
    let args = [
        "finetune",
        "--data",
        data.path().to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--steps",
        "3",
        "--seq-len",
        "24",
        "--batch",
        "1",
        "--json",
    ];
    let mut child = std::process::Command::new(penwright_e2e::binary("penwright"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // read to the end (a closed pipe would kill the writer): ask to stop at the first step
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        if line.unwrap().contains("\"event\":\"step\"") && !dir.join("stop-requested").exists() {
            std::fs::write(dir.join("stop-requested"), b"").unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "a stopped run exits with 130");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("checkpoint/state.json")).unwrap())
            .unwrap();
    let at = state["step"].as_u64().unwrap();
    assert!((1..3).contains(&at), "stopped at step {at}");
    let mut resume = args.to_vec();
    resume.push("--resume");
    let summary = penwright_json(&resume);
    assert_eq!(summary["steps"], 3, "{summary}");
}
