//! The app's commands through Tauri's IPC layer on the mock runtime, over
//! the real engine: presets, estimates, a real quickstart run observed
//! through its `run-events`, its controls, charts, resume and export.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{
    INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder, mock_context, noop_assets,
};
use tauri::webview::InvokeRequest;
use tauri::{Listener, WebviewWindow};
use tunesmith_app::{APP_NAME, AppInfo, AppState, RUN_EVENTS, RunEvents, build_app};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct App {
    tauri_app: tauri::App<MockRuntime>,
    webview: WebviewWindow<MockRuntime>,
    runs: tempfile::TempDir,
    payloads: Arc<Mutex<Vec<RunEvents>>>,
}

fn app() -> App {
    app_with(|state| state)
}

fn app_with(adjust: impl FnOnce(AppState) -> AppState) -> App {
    let runs = tempfile::tempdir().unwrap();
    // Models this machine's user fetched stay out of the tests.
    let state = adjust(
        AppState::new(
            runs.path().to_path_buf(),
            root().join("assets"),
            root().join("presets"),
        )
        .with_fetched_models_dir(None),
    );
    let app = build_app(mock_builder(), state)
        .build(mock_context(noop_assets()))
        .expect("mock app builds");
    let payloads = Arc::new(Mutex::new(Vec::new()));
    let sink = payloads.clone();
    app.listen_any(RUN_EVENTS, move |event| {
        let p: RunEvents = serde_json::from_str(event.payload()).expect("typed payload");
        sink.lock().unwrap().push(p);
    });
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("mock window builds");
    App {
        tauri_app: app,
        webview,
        runs,
        payloads,
    }
}

impl App {
    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, String> {
        get_ipc_response(
            &self.webview,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|body| body.deserialize::<Value>().unwrap())
        .map_err(|e| {
            e.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string())
        })
    }

    fn ok(&self, cmd: &str, args: Value) -> Value {
        self.invoke(cmd, args)
            .unwrap_or_else(|e| panic!("{cmd} failed: {e}"))
    }

    /// Waits until the run's events include one that `done` accepts.
    fn wait_for(&self, what: &str, done: impl Fn(&TrainEventJson) -> bool) {
        let start = Instant::now();
        loop {
            let seen = self
                .payloads
                .lock()
                .unwrap()
                .iter()
                .flat_map(|p| p.events.iter().map(|e| serde_json::to_value(e).unwrap()))
                .any(|e| done(&e));
            if seen {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "no {what} within 5 minutes"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn events(&self) -> Vec<Value> {
        self.payloads
            .lock()
            .unwrap()
            .iter()
            .flat_map(|p| p.events.iter().map(|e| serde_json::to_value(e).unwrap()))
            .collect()
    }
}

type TrainEventJson = Value;

#[test]
fn a_fetched_smollm2_brings_its_quickstart_preset() {
    use tunesmith::catalog::fetch::SMOLLM2_135M_INSTRUCT as SMOLLM2;
    let names = |app: &App| -> Vec<String> {
        let presets = app.ok("presets", json!({}));
        presets
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!names(&app()).contains(&"quickstart-smollm2".to_string()));

    // A file of the right size is what `cached` looks for (fetch checked
    // its sha256 when it kept it); a sparse one costs no disk.
    let cache = tempfile::tempdir().unwrap();
    let file = cache.path().join(SMOLLM2.file_name());
    std::fs::File::create(&file)
        .unwrap()
        .set_len(SMOLLM2.size)
        .unwrap();
    let dir = cache.path().to_path_buf();
    let app = app_with(move |s| s.with_fetched_models_dir(Some(dir)));
    assert_eq!(names(&app)[..2], ["quickstart", "quickstart-smollm2"]);
    let presets = app.ok("presets", json!({}));
    let real = &presets[1]["config"];
    assert_eq!(real["model"]["path"], json!(file.canonicalize().unwrap()));
    assert!(
        real["data"]["train"]
            .as_str()
            .unwrap()
            .ends_with("smithy-chat.jsonl")
    );
    // The app may read the model it offers (no dialog picked it): the
    // zeros are refused as a GGUF file, not as a path never chosen.
    let err = app
        .invoke("inspect_model", json!({ "path": file }))
        .unwrap_err();
    assert!(!err.contains("was not chosen"), "{err}");
    assert!(err.contains(SMOLLM2.file_name()), "{err}");
}

fn quickstart(app: &App) -> Value {
    let presets = app.ok("presets", json!({}));
    let mut config = presets
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "quickstart")
        .expect("quickstart preset")["config"]
        .clone();
    assert_eq!(
        config["output"]["runs_dir"].as_str().unwrap(),
        app.runs.path().canonicalize().unwrap().to_str().unwrap()
    );
    config["model"]["backend"] = json!("cpu");
    config
}

#[test]
fn app_info_returns_name_and_crate_version() {
    let app = app();
    let value = app.ok("app_info", json!({}));
    let info: AppInfo = serde_json::from_value(value.clone()).expect("typed AppInfo");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.name, APP_NAME);
    assert!(app.invoke("no_such_command", json!({})).is_err());
}

#[test]
fn models_found_on_the_machine_can_be_opened_without_a_dialog() {
    let store = root().join("tests/fixtures/gguf");
    let app = app_with(|s| {
        s.with_model_roots(tunesmith::catalog::Roots {
            lm_studio: vec![store.clone()],
            ..tunesmith::catalog::Roots::none()
        })
    });
    let gguf = store.join("qwen2/model.gguf");
    // Outside the bundled files and never picked: refused at first.
    let refused = app
        .invoke("inspect_model", json!({ "path": gguf }))
        .unwrap_err();
    assert!(refused.contains("was not chosen"), "{refused}");
    let listing = app.ok("list_models", json!({}));
    let models = listing["models"].as_array().unwrap();
    let mut names: Vec<&str> = models.iter().filter_map(|m| m["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "llama/model.gguf",
            "mistral/model.gguf",
            "qwen2/model.gguf",
            "qwen3/model.gguf",
            "spm/tokenizer.gguf"
        ],
        "{listing:#}"
    );
    let qwen2 = models
        .iter()
        .find(|m| m["name"] == "qwen2/model.gguf")
        .unwrap_or_else(|| panic!("{listing:#}"));
    assert_eq!(qwen2["store"], "lm-studio");
    assert_eq!(qwen2["format"], "gguf");
    assert_eq!(qwen2["trainable"], true);
    assert_eq!(qwen2["architecture"], "qwen2");
    // Found, so granted: the wizard's summary reads it.
    let summary = app.ok("inspect_model", json!({ "path": qwen2["path"] }));
    assert_eq!(summary["model_type"], "qwen2");
    assert_eq!(summary["parameters"], qwen2["parameters"]);
    // Extra folders must have been picked first.
    let err = app
        .invoke("list_models", json!({ "dirs": ["/usr/share"] }))
        .unwrap_err();
    assert!(err.contains("was not chosen"), "{err}");
}

#[test]
fn wizard_commands_answer_from_the_engine() {
    let app = app();
    let bundled = app.ok("bundled", json!({}));
    let model = bundled["model"]["path"].as_str().unwrap().to_string();
    let dataset = bundled["datasets"][1]["path"].as_str().unwrap().to_string();
    let summary = app.ok("inspect_model", json!({ "path": model }));
    assert_eq!(summary["model_type"], "llama");
    assert_eq!(summary["parameters"], 988_288);
    let report = app.ok(
        "inspect_dataset",
        json!({ "path": dataset, "model_path": model, "max_length": 128 }),
    );
    assert_eq!(report["format"], "messages");
    assert_eq!(report["rows"], 150);
    assert_eq!(report["tokens"]["examples"].as_array().unwrap().len(), 3);
    // The format can be forced; a wrong one makes every row bad.
    let forced = app.ok(
        "inspect_dataset",
        json!({ "path": dataset, "format": "alpaca" }),
    );
    assert_eq!(forced["rows"], 0);
    assert_eq!(forced["bad_rows"], 150);

    // Paths the user never picked are refused.
    let outside = app
        .invoke("inspect_dataset", json!({ "path": "/etc/passwd" }))
        .unwrap_err();
    assert!(outside.contains("Choose"), "{outside}");

    let methods = app.ok("methods", json!({}));
    let ids: Vec<&str> = methods
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "lora", "rslora", "dora", "pissa", "corda", "miss", "bone", "adalora", "kasa", "hft",
            "full"
        ]
    );

    let mut config = quickstart(&app);
    let e16 = app.ok("estimate", json!({ "config": config }));
    assert_eq!(e16["trainable_params"], 147_968);
    config["method"]["rank"] = json!(8);
    let e8 = app.ok("estimate", json!({ "config": config }));
    assert_eq!(e8["trainable_params"], 73_984);
    assert!(e8["memory"]["total"].as_u64() < e16["memory"]["total"].as_u64());
    config["method"]["rank"] = json!(100_000);
    let err = app
        .invoke("estimate", json!({ "config": config }))
        .unwrap_err();
    assert!(err.contains("method.rank"), "{err}");
    config["method"]["rank"] = json!(8);
    let toml = app.ok("config_toml", json!({ "config": config }));
    assert!(toml.as_str().unwrap().contains("rank = 8"));

    let backends = app.ok("backends", json!({}));
    let cpu = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "cpu")
        .unwrap();
    assert_eq!(cpu["available"], true);
}

#[test]
fn a_quickstart_run_streams_coalesced_events_and_exports() {
    let app = app();
    let mut config = quickstart(&app);
    config["train"]["max_steps"] = json!(30);
    config["train"]["eval_every"] = json!(10);
    config["train"]["checkpoint_every"] = json!(10);
    let started = app.ok("start_run", json!({ "config": config }));
    let run_dir = started["run_dir"].as_str().unwrap().to_string();

    // Pause after the first steps, resume, then let it finish.
    app.wait_for("step", |e| e["event"] == "step");
    app.ok(
        "control_run",
        json!({ "run_dir": run_dir, "action": "pause" }),
    );
    app.wait_for("paused", |e| e["event"] == "paused");
    app.ok(
        "control_run",
        json!({ "run_dir": run_dir, "action": "resume" }),
    );
    app.wait_for("finished", |e| e["event"] == "finished");

    let payloads = app.payloads.lock().unwrap().clone();
    let events = app.events();
    let steps: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=30).collect::<Vec<_>>(), "every step, in order");
    assert_eq!(events[0]["event"], "started");
    // Coalesced: fewer payloads than events.
    assert!(payloads.len() < events.len(), "{} payloads", payloads.len());
    let last = payloads.last().unwrap();
    assert_eq!(last.progress["state"], "finished");
    assert_eq!(last.progress["step"], 30);
    assert!(Path::new(&run_dir).join("report.svg").is_file());

    // The controls of an ended run are gone.
    let err = app
        .invoke(
            "control_run",
            json!({ "run_dir": run_dir, "action": "stop" }),
        )
        .unwrap_err();
    assert!(err.contains("not running"), "{err}");

    let runs = app.ok("list_runs", json!({}));
    assert_eq!(runs[0]["status"], "completed");
    let progress = app.ok("run_progress", json!({ "run_dir": run_dir }));
    assert_eq!(
        (progress["state"].clone(), progress["step"].clone()),
        (json!("finished"), json!(30))
    );
    let reopened = app.ok("run_events", json!({ "run_dir": run_dir }));
    assert_eq!(reopened.as_array().unwrap().len(), events.len());
    let chart = app.ok(
        "run_chart",
        json!({ "run_dir": run_dir, "width": 800, "height": 500 }),
    );
    assert!(chart["svg"].as_str().unwrap().starts_with("<svg"));
    assert!(
        chart["markers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["kind"] == "best")
    );

    let out = Path::new(&run_dir).join("export/peft");
    let report = app.ok(
        "export_run",
        json!({ "run_dir": run_dir, "format": "peft", "out": out }),
    );
    assert!(out.join("adapter_model.safetensors").is_file());
    assert!(report["bytes"].as_u64().unwrap() > 0);
    let err = app
        .invoke(
            "export_run",
            json!({ "run_dir": run_dir, "format": "peft", "out": "/tmp/not-chosen" }),
        )
        .unwrap_err();
    assert!(err.contains("Choose"), "{err}");
}

#[test]
fn a_stopped_run_resumes_to_the_end() {
    let app = app();
    let mut config = quickstart(&app);
    config["train"]["max_steps"] = json!(20);
    config["train"]["eval_every"] = json!(10);
    let started = app.ok("start_run", json!({ "config": config }));
    let run_dir = started["run_dir"].as_str().unwrap().to_string();
    app.wait_for("step", |e| e["event"] == "step");
    app.ok(
        "control_run",
        json!({ "run_dir": run_dir, "action": "stop" }),
    );
    app.wait_for("finished", |e| e["event"] == "finished");
    let stopped_at = app
        .events()
        .iter()
        .find(|e| e["event"] == "finished")
        .map(|e| (e["reason"].clone(), e["step"].as_u64().unwrap()))
        .unwrap();
    assert_eq!(stopped_at.0, "stopped");
    assert!(stopped_at.1 < 20);
    app.payloads.lock().unwrap().clear();

    app.ok("resume_run", json!({ "run_dir": run_dir }));
    app.wait_for("finished", |e| e["event"] == "finished");
    let events = app.events();
    assert_eq!(events[0]["start_step"].as_u64(), Some(stopped_at.1));
    let last = events
        .iter()
        .rev()
        .find(|e| e["event"] == "finished")
        .unwrap();
    assert_eq!(
        (last["reason"].clone(), last["step"].clone()),
        (json!("completed"), json!(20))
    );

    let chat = app.ok(
        "chat",
        json!({
            "id": "tuned-1",
            "model_path": root().join("assets/models/tiny-llama"),
            "run_dir": run_dir,
            "prompt": "What is the capital of Sweden?",
            "max_new_tokens": 8
        }),
    );
    assert!(chat["tokens"].as_u64().unwrap() >= 1);
}

#[test]
fn triage_from_the_app_reports_its_candidates_and_the_one_kept() {
    let app = app();
    let payloads: Arc<Mutex<Vec<tunesmith_app::TriageEvents>>> = Arc::default();
    let sink = payloads.clone();
    app.tauri_app
        .listen_any(tunesmith_app::TRIAGE_EVENTS, move |event| {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(event.payload()).expect("typed payload"));
        });
    let mut config = quickstart(&app);
    config["train"]["max_steps"] = json!(20);
    config["train"]["eval_every"] = json!(10);
    let err = app
        .invoke(
            "start_triage",
            json!({ "config": config, "grid": ["lr=1e-3"] }),
        )
        .unwrap_err();
    assert!(err.contains("at least two candidates"), "{err}");

    let started = app.ok(
        "start_triage",
        json!({ "config": config, "grid": ["lr=1e-3,3e-3"] }),
    );
    let dir = PathBuf::from(started["dir"].as_str().unwrap());
    assert!(dir.starts_with(app.runs.path().canonicalize().unwrap()));
    let start = Instant::now();
    let report = loop {
        if let Some(done) = payloads.lock().unwrap().iter().find_map(|p| p.done.clone()) {
            break done;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "triage did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let candidates = report["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2);
    let kept = report["kept"].as_u64().unwrap() as usize;
    assert_eq!(candidates[kept]["steps"], 20);
    assert!(dir.join("triage.svg").is_file());
    let events: usize = payloads
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.events.len())
        .sum();
    assert!(payloads.lock().unwrap().len() < events, "coalesced");
    // The candidates' charts open like any run's.
    let chart = app.ok(
        "overlay_chart",
        json!({
            "run_dirs": candidates.iter().map(|c| c["run_dir"].clone()).collect::<Vec<_>>(),
            "width": 800, "height": 400
        }),
    );
    assert!(chart["svg"].as_str().unwrap().contains("lr-3e-3"));
}
