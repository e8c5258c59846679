//! Exports read back: PEFT tensors are the checkpoint's (transposed), the
//! merged model equals W + scale * B A and computes the adapted model's
//! logits, the GGUF adapter has llama.cpp's names, layout, alpha and q/k
//! permutation; wrong requests fail clearly and leave nothing behind.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::logits;
use safetensors::SafeTensors;
use tunesmith::RunConfig;
use tunesmith::export::gguf::{self, Value};
use tunesmith::export::{
    CheckpointChoice, ExportError, ExportFormat, ExportOptions, GgufDtype, ModelDtype, Trained,
    export,
};
use tunesmith::model::{WeightSource, decode_f32};
use tunesmith::train::{Session, TrainEvent};
use tunesmith::{CausalLm, ModelConfig};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A short quickstart run (checkpoints at the end) with extra overrides.
fn short_run(runs: &Path, extra: &[&str]) -> PathBuf {
    run_preset(&root().join("presets/quickstart.toml"), runs, extra)
}

fn qwen2() -> PathBuf {
    root().join("tests/fixtures/models/qwen2")
}

/// A short rank-4, alpha-8 run on the qwen2 fixture (q/k/v biases, tied
/// embeddings) with one more override (the method variant).
fn qwen2_r4_run(dir: &Path, variant: &str) -> PathBuf {
    short_run(
        &dir.join("runs"),
        &[
            &format!("model.path={}", qwen2().display()),
            variant,
            "method.rank=4",
            "method.alpha=8",
        ],
    )
}

/// The quickstart as a full fine-tune of the last layer's MLP.
fn full_preset(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("presets/quickstart.toml")).unwrap();
    let start = text.find("[method]").unwrap();
    let end = start + text[start..].find("[train]").unwrap();
    let text = format!(
        "{}[method]\nkind = \"full\"\nmodules = [\"gate_proj\", \"up_proj\", \"down_proj\"]\nlayers = [1]\n\n{}",
        &text[..start],
        &text[end..]
    )
    .replace("../assets", &root().join("assets").display().to_string());
    let path = dir.join("full.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_preset(preset: &Path, runs: &Path, extra: &[&str]) -> PathBuf {
    let mut overrides = vec![
        format!("output.runs_dir={}", runs.display()),
        "model.backend=cpu".to_string(),
        "train.max_steps=3".to_string(),
        "train.eval_every=0".to_string(),
        // Larger steps, so the update is far from zero.
        "train.learning_rate=0.01".to_string(),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    let config = RunConfig::load(preset, &overrides).unwrap();
    let handle = Session::start(config).unwrap();
    let mut run_dir = None;
    for event in handle.events().iter() {
        match &event {
            TrainEvent::Started { run_dir: d, .. } => run_dir = Some(d.clone()),
            TrainEvent::Failed { message, .. } => panic!("{message}"),
            _ => {}
        }
        if event.is_terminal() {
            break;
        }
    }
    run_dir.unwrap()
}

fn options(format: ExportFormat, out: PathBuf) -> ExportOptions {
    ExportOptions {
        format,
        checkpoint: CheckpointChoice::Last,
        out,
        gguf_dtype: GgufDtype::F32,
        model_dtype: ModelDtype::F16,
        overwrite: false,
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// llama.cpp's q/k row permutation, written from its converter's numpy
/// (reshape (heads, 2, half, cols), swap axes 1 and 2) independently of
/// the engine's loop.
fn llama_cpp_permute(rows: &[Vec<f32>], heads: usize) -> Vec<Vec<f32>> {
    let half = rows.len() / heads / 2;
    let mut out = Vec::new();
    for h in 0..heads {
        for j in 0..half {
            for k in 0..2 {
                out.push(rows[h * 2 * half + k * half + j].clone());
            }
        }
    }
    out
}

/// The merged folder, loaded as a plain model, computes what the run's
/// adapted model computes.
fn assert_same_logits(run: &Path, merged: &Path) {
    assert_close_logits(run, merged, 1e-4);
}

/// As [`assert_same_logits`], within `tol` (a merged tensor stored in 16
/// bits is rounded once more than the adapted model's f32 sum).
fn assert_close_logits(run: &Path, merged: &Path, tol: f32) {
    let device = Device::flex();
    let (adapted, _, _) = tunesmith::train::load_adapted(run, None, &device).unwrap();
    let (plain, _) = CausalLm::load(merged, &device).unwrap();
    let ids: Vec<i64> = (0..24).map(|i| (i * 37 % 300) as i64).collect();
    let (x, y) = (logits(&adapted, &ids), logits(&plain, &ids));
    let diff = x
        .iter()
        .zip(&y)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < tol, "merged logits differ by {diff}");
}

#[test]
fn lora_exports_read_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let run = short_run(&tmp.path().join("runs"), &[]);
    let trained = Trained::load(&run, &CheckpointChoice::Best).unwrap();
    assert_eq!(trained.step, 3);
    let lora = trained.lora_config().unwrap().clone();
    let config = ModelConfig::from_dir(&trained.config.model.path).unwrap();
    assert_eq!(trained.lora().len(), 7 * config.num_layers);

    // PEFT: keys, layout, metadata and config.
    let peft = tmp.path().join("peft");
    let report = export(&run, &options(ExportFormat::Peft, peft.clone())).unwrap();
    assert_eq!(report.files.len(), 3);
    let bytes = std::fs::read(peft.join("adapter_model.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 2 * trained.lora().len());
    let ckpt = tunesmith::train::checkpoint::read_safetensors(
        &trained.checkpoint.join("trainable.safetensors"),
    )
    .unwrap();
    let ours = &ckpt["layers.1.self_attn.q_proj.adapter.lora.a"]; // [in, r]
    let a = st
        .tensor("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")
        .unwrap();
    assert_eq!(a.shape(), [lora.rank, ours.shape[0]]);
    let a = f32s(a.data());
    for i in 0..ours.shape[0] {
        for k in 0..lora.rank {
            assert_eq!(a[k * ours.shape[0] + i], ours.data[i * lora.rank + k]);
        }
    }
    let b = st
        .tensor("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight")
        .unwrap();
    assert_eq!(b.shape(), [config.hidden_size, lora.rank]);
    assert!(f32s(b.data()).iter().any(|&v| v != 0.0), "B has trained");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(peft.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["r"], lora.rank);
    assert_eq!(cfg["lora_alpha"].as_f64().unwrap(), lora.alpha);
    assert_eq!(cfg["use_rslora"], false);
    assert_eq!(cfg["fan_in_fan_out"], false);
    assert_eq!(cfg["target_modules"].as_array().unwrap().len(), 7);

    // Merged: W + scale * B A to 1e-6, untouched tensors byte-identical,
    // and the logits of the adapted model.
    let merged = tmp.path().join("merged");
    export(&run, &options(ExportFormat::Merged, merged.clone())).unwrap();
    let base = WeightSource::open(&trained.config.model.path).unwrap();
    let out = WeightSource::open(&merged).unwrap();
    assert_eq!(base.tensors().len(), out.tensors().len());
    let scale = lora.scaling() as f32;
    for (name, info) in base.tensors() {
        let got = out.tensors().get(name).unwrap();
        let module = name.trim_end_matches(".weight");
        let Some(pair) = trained.lora().get(module) else {
            assert_eq!(base.raw(info), out.raw(got), "{name} is untouched");
            continue;
        };
        let w = f32s(&base.raw(info));
        let m = f32s(&out.raw(got));
        let (n_out, n_in, r) = (info.shape[0], info.shape[1], pair.rank());
        for o in 0..n_out {
            for i in 0..n_in {
                let delta: f32 = (0..r)
                    .map(|k| pair.b.data[o * r + k] * pair.a.data[k * n_in + i])
                    .sum();
                let want = w[o * n_in + i] + scale * delta;
                assert!(
                    (m[o * n_in + i] - want).abs() <= 1e-6,
                    "{name}[{o},{i}]: {} vs {want}",
                    m[o * n_in + i]
                );
            }
        }
    }
    assert!(merged.join("tokenizer.json").is_file());
    assert!(merged.join("config.json").is_file());
    assert_same_logits(&run, &merged);

    // GGUF: llama.cpp's names, ggml dims, FLOAT32 alpha, q/k permutation.
    let file = tmp.path().join("adapter.gguf");
    export(&run, &options(ExportFormat::Gguf, file.clone())).unwrap();
    let g = gguf::File::parse(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(g.get("general.type"), Some(&Value::Str("adapter".into())));
    assert_eq!(
        g.get("general.architecture"),
        Some(&Value::Str("llama".into()))
    );
    assert_eq!(g.get("adapter.type"), Some(&Value::Str("lora".into())));
    assert_eq!(
        g.get("adapter.lora.alpha"),
        Some(&Value::F32(lora.alpha as f32))
    );
    assert_eq!(g.tensors.len(), 2 * trained.lora().len());
    let tensor = |name: &str| g.tensors.iter().find(|t| t.name == name).unwrap();
    for (gguf_name, module, heads) in [
        (
            "blk.1.attn_q.weight",
            "model.layers.1.self_attn.q_proj",
            Some(config.num_heads),
        ),
        (
            "blk.0.attn_k.weight",
            "model.layers.0.self_attn.k_proj",
            Some(config.num_kv_heads),
        ),
        (
            "blk.1.attn_v.weight",
            "model.layers.1.self_attn.v_proj",
            None,
        ),
        (
            "blk.0.ffn_down.weight",
            "model.layers.0.mlp.down_proj",
            None,
        ),
    ] {
        let pair = &trained.lora()[module];
        let (r, n_in, n_out) = (pair.rank(), pair.a.shape[1], pair.b.shape[0]);
        let a = tensor(&format!("{gguf_name}.lora_a"));
        let b = tensor(&format!("{gguf_name}.lora_b"));
        assert_eq!(a.dims, [n_in as u64, r as u64], "{gguf_name} lora_a");
        assert_eq!(b.dims, [r as u64, n_out as u64], "{gguf_name} lora_b");
        assert_eq!(a.to_f32(), pair.a.data);
        let rows: Vec<Vec<f32>> = pair.b.data.chunks(r).map(<[f32]>::to_vec).collect();
        let want: Vec<f32> = match heads {
            Some(h) => llama_cpp_permute(&rows, h).concat(),
            None => pair.b.data.clone(),
        };
        assert_eq!(b.to_f32(), want, "{gguf_name} lora_b");
    }
    // f16 halves the file.
    let mut half = options(ExportFormat::Gguf, tmp.path().join("adapter-f16.gguf"));
    half.gguf_dtype = GgufDtype::F16;
    export(&run, &half).unwrap();
    let small = std::fs::metadata(tmp.path().join("adapter-f16.gguf"))
        .unwrap()
        .len();
    assert!(small < std::fs::metadata(&file).unwrap().len() * 6 / 10);

    // A complete llama.cpp model: every base tensor under its llama.cpp
    // name, 2-D weights in f16 (or q8_0), merged, q rows permuted.
    let model_file = tmp.path().join("model.gguf");
    export(&run, &options(ExportFormat::MergedGguf, model_file.clone())).unwrap();
    let m = gguf::File::parse(&std::fs::read(&model_file).unwrap()).unwrap();
    assert_eq!(m.tensors.len(), base.tensors().len());
    assert_eq!(m.get("general.type"), Some(&Value::Str("model".into())));
    assert_eq!(
        m.get("llama.block_count"),
        Some(&Value::U32(config.num_layers as u32))
    );
    assert_eq!(
        m.get("tokenizer.ggml.model"),
        Some(&Value::Str("gpt2".into()))
    );
    let Some(Value::ArrStr(tokens)) = m.get("tokenizer.ggml.tokens") else {
        panic!("no tokens");
    };
    assert_eq!(tokens.len(), config.vocab_size);
    assert!(m.get("tokenizer.chat_template").is_some());
    let q = m
        .tensors
        .iter()
        .find(|t| t.name == "blk.1.attn_q.weight")
        .unwrap();
    assert_eq!(q.ty, gguf::TensorType::F16);
    let merged_q = WeightSource::open(&merged).unwrap();
    let info = &merged_q.tensors()["model.layers.1.self_attn.q_proj.weight"];
    let rows: Vec<Vec<f32>> = f32s(&merged_q.raw(info))
        .chunks(info.shape[1])
        .map(<[f32]>::to_vec)
        .collect();
    let want: Vec<f32> = llama_cpp_permute(&rows, config.num_heads)
        .concat()
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();
    assert_eq!(q.to_f32(), want);
    let norm = m
        .tensors
        .iter()
        .find(|t| t.name == "output_norm.weight")
        .unwrap();
    assert_eq!(norm.ty, gguf::TensorType::F32);
    let mut q8 = options(ExportFormat::MergedGguf, tmp.path().join("model-q8.gguf"));
    q8.model_dtype = ModelDtype::Q8_0;
    export(&run, &q8).unwrap();
    let m8 = gguf::File::parse(&std::fs::read(tmp.path().join("model-q8.gguf")).unwrap()).unwrap();
    let q8q = m8
        .tensors
        .iter()
        .find(|t| t.name == "blk.1.attn_q.weight")
        .unwrap();
    assert_eq!(q8q.ty, gguf::TensorType::Q8_0);
    let exact = llama_cpp_permute(&rows, config.num_heads).concat();
    for (block, got) in exact.chunks(32).zip(q8q.to_f32().chunks(32)) {
        let step = block.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
        for (a, b) in block.iter().zip(got) {
            // Half a step, plus the f16 rounding of the scale times 127.
            assert!((a - b).abs() <= 0.57 * step + 1e-6, "{a} vs {b}");
        }
    }

    // Ollama: the model file and a Modelfile with the Llama 3 template.
    let ollama = tmp.path().join("ollama");
    export(&run, &options(ExportFormat::Ollama, ollama.clone())).unwrap();
    assert!(ollama.join("model.gguf").is_file());
    let modelfile = std::fs::read_to_string(ollama.join("Modelfile")).unwrap();
    assert!(modelfile.contains("FROM ./model.gguf\n"), "{modelfile}");
    assert!(modelfile.contains("TEMPLATE \"\"\"{{- range .Messages }}<|start_header_id|>"));
    assert!(
        modelfile.contains("PARAMETER stop \"<|eot_id|>\""),
        "{modelfile}"
    );

    // An existing destination is not overwritten without asking.
    let err = export(&run, &options(ExportFormat::Peft, peft.clone())).unwrap_err();
    assert!(matches!(err, ExportError::Exists { .. }), "{err}");
    let mut again = options(ExportFormat::Peft, peft);
    again.overwrite = true;
    export(&run, &again).unwrap();
}

#[test]
fn rslora_is_folded_into_the_gguf_alpha_and_qwen2_is_not_permuted() {
    let tmp = tempfile::tempdir().unwrap();
    let run = qwen2_r4_run(tmp.path(), "method.use_rslora=true");
    let trained = Trained::load(&run, &CheckpointChoice::Last).unwrap();
    let file = tmp.path().join("qwen.gguf");
    export(&run, &options(ExportFormat::Gguf, file.clone())).unwrap();
    let g = gguf::File::parse(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        g.get("general.architecture"),
        Some(&Value::Str("qwen2".into()))
    );
    // llama.cpp computes alpha / r; rsLoRA needs alpha / sqrt(r) = 8 / 2.
    let Some(Value::F32(alpha)) = g.get("adapter.lora.alpha") else {
        panic!("no FLOAT32 alpha");
    };
    assert_eq!(*alpha / 4.0, 4.0);
    let pair = &trained.lora()["model.layers.0.self_attn.q_proj"];
    let b = g
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.attn_q.weight.lora_b")
        .unwrap();
    assert_eq!(b.to_f32(), pair.b.data, "qwen2 q rows are not permuted");

    // The merged qwen2 (tied embeddings, q/k/v biases) computes the
    // adapted logits too.
    let merged = tmp.path().join("merged");
    export(&run, &options(ExportFormat::Merged, merged.clone())).unwrap();
    assert_same_logits(&run, &merged);
}

/// A PiSSA run trains on the residual `W − s·A₀·B₀`; its exports are
/// PEFT's conversion to a rank-2r LoRA on the original base (`[A; A₀]`,
/// `[B, −B₀]`, alpha doubled so the scale stays), so the PEFT adapter, the
/// GGUF adapter and the merged model all apply to the unchanged base.
#[test]
fn pissa_exports_as_a_rank_2r_lora_on_the_original_base() {
    let tmp = tempfile::tempdir().unwrap();
    let run = qwen2_r4_run(tmp.path(), "method.init=pissa");
    let trained = Trained::load(&run, &CheckpointChoice::Last).unwrap();
    let lora = trained.lora_config().unwrap();
    assert_eq!((lora.rank, lora.alpha, lora.scaling()), (8, 16.0, 2.0));
    let pair = &trained.lora()["model.layers.0.mlp.down_proj"];
    assert_eq!((pair.a.shape[0], pair.b.shape[1]), (8, 8));
    // The trained half moved away from the initial one it is paired with.
    let (rows, cols) = (pair.b.shape[0], 8);
    let moved = (0..rows)
        .flat_map(|o| (0..4).map(move |k| (o, k)))
        .map(|(o, k)| (pair.b.data[o * cols + k] + pair.b.data[o * cols + 4 + k]).abs())
        .fold(0f32, f32::max);
    assert!(moved > 1e-4, "B never left B0 ({moved})");

    let peft = tmp.path().join("peft");
    export(&run, &options(ExportFormat::Peft, peft.clone())).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(peft.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["r"].clone(), config["lora_alpha"].clone()),
        (8.into(), 16.into())
    );
    assert_eq!(config["init_lora_weights"], true);
    let card = std::fs::read_to_string(peft.join("README.md")).unwrap();
    assert!(card.contains("PiSSA"), "{card}");

    let file = tmp.path().join("pissa.gguf");
    export(&run, &options(ExportFormat::Gguf, file.clone())).unwrap();
    let g = gguf::File::parse(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(g.get("adapter.lora.alpha"), Some(&Value::F32(16.0)));
    let b = g
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.ffn_down.weight.lora_b")
        .unwrap();
    assert_eq!(b.to_f32(), pair.b.data);

    let merged = tmp.path().join("merged");
    export(&run, &options(ExportFormat::Merged, merged.clone())).unwrap();
    assert_same_logits(&run, &merged);
}

/// A DoRA run (qwen2: q/k/v biases, which DoRA's rescaling must leave
/// out) exports its magnitudes to PEFT, merges to a model that computes the
/// adapted logits, and is refused a llama.cpp adapter with the formats that
/// can carry it named.
#[test]
fn dora_exports_to_peft_and_merged_and_is_refused_a_gguf_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let run = qwen2_r4_run(tmp.path(), "method.use_dora=true");
    let trained = Trained::load(&run, &CheckpointChoice::Last).unwrap();
    let base = WeightSource::open(&qwen2()).unwrap();
    let pair = &trained.lora()["model.layers.0.mlp.down_proj"];
    let m = pair.magnitude.as_ref().expect("a DoRA run has magnitudes");
    let info = &base.tensors()["model.layers.0.mlp.down_proj.weight"];
    let w = decode_f32(&base.raw(info), info.dtype).unwrap();
    let cols = w.len() / m.data.len();
    let norms: Vec<f32> = w
        .chunks_exact(cols)
        .map(|row| row.iter().map(|x| x * x).sum::<f32>().sqrt())
        .collect();
    let moved = m
        .data
        .iter()
        .zip(&norms)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        moved > 1e-4,
        "the magnitude never left the base's norms ({moved})"
    );

    let peft = tmp.path().join("peft");
    export(&run, &options(ExportFormat::Peft, peft.clone())).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(peft.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["use_dora"], true);
    let bytes = std::fs::read(peft.join("adapter_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let key = "base_model.model.model.layers.0.mlp.down_proj.lora_magnitude_vector";
    assert_eq!(f32s(st.tensor(key).unwrap().data()), m.data);
    assert_eq!(st.len(), 3 * trained.lora().len());

    let file = tmp.path().join("dora.gguf");
    let err = export(&run, &options(ExportFormat::Gguf, file.clone())).unwrap_err();
    assert!(matches!(err, ExportError::NoGgufAdapter { .. }), "{err}");
    assert!(err.to_string().contains("`merged-gguf`"), "{err}");
    assert!(!file.exists());

    let merged = tmp.path().join("merged");
    export(&run, &options(ExportFormat::Merged, merged.clone())).unwrap();
    assert_same_logits(&run, &merged);
}

/// A MiSS run (qwen2, shard width 6: a padded last shard) exports PEFT's
/// own MiSS adapter with the checkpoint's blocks, a llama.cpp adapter that
/// is the equal rank-6 LoRA (A sums the shards, B is the block, alpha = r),
/// and a merged model with the adapted logits. Bone (MiSS's bat mode) has
/// no LoRA form: its GGUF adapter is refused, naming what to export.
#[test]
fn miss_exports_its_own_peft_adapter_and_an_equal_lora_for_llama_cpp() {
    let tmp = tempfile::tempdir().unwrap();
    let run = short_run(
        &tmp.path().join("runs"),
        &[
            &format!("model.path={}", qwen2().display()),
            "method.kind=miss",
            "method.rank=6",
        ],
    );
    let trained = Trained::load(&run, &CheckpointChoice::Last).unwrap();
    let module = "model.layers.0.mlp.down_proj";
    let native = trained
        .form
        .peft
        .as_ref()
        .expect("a MiSS run has its own PEFT form");
    let block = &native.tensors[&format!("{module}.miss_block")];
    let out = block.shape[1];
    assert_eq!(block.shape[0], 6);
    assert!(
        block.data.iter().any(|&v| v.abs() > 1e-4),
        "the block never moved"
    );

    let peft = tmp.path().join("peft");
    export(&run, &options(ExportFormat::Peft, peft.clone())).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(peft.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "MISS");
    assert_eq!(
        (config["r"].clone(), config["init_weights"].clone()),
        (6.into(), true.into())
    );
    let bytes = std::fs::read(peft.join("adapter_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let key = format!("base_model.model.{module}.miss_block");
    assert_eq!(f32s(st.tensor(&key).unwrap().data()), block.data);
    assert_eq!(st.len(), 7 * trained.model.num_layers);

    // The LoRA form: A (r, in) sums input i into shard position i mod r.
    let pair = &trained.lora()[module];
    let inp = pair.a.shape[1];
    for k in 0..6 {
        for i in 0..inp {
            let want = if i % 6 == k { 1.0 } else { 0.0 };
            assert_eq!(pair.a.data[k * inp + i], want, "A[{k}, {i}]");
        }
    }
    for o in 0..out {
        for k in 0..6 {
            assert_eq!(pair.b.data[o * 6 + k], block.data[k * out + o]);
        }
    }
    let file = tmp.path().join("miss.gguf");
    export(&run, &options(ExportFormat::Gguf, file.clone())).unwrap();
    let g = gguf::File::parse(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(g.get("adapter.lora.alpha"), Some(&Value::F32(6.0)));
    let a = g
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.ffn_down.weight.lora_a")
        .unwrap();
    assert_eq!(a.to_f32(), pair.a.data);
    let merged = tmp.path().join("merged");
    export(&run, &options(ExportFormat::Merged, merged.clone())).unwrap();
    assert_same_logits(&run, &merged);

    let bone = short_run(
        &tmp.path().join("runs"),
        &["method.kind=miss", "method.mode=bat", "method.rank=8"],
    );
    let file = tmp.path().join("bone.gguf");
    let err = export(&bone, &options(ExportFormat::Gguf, file.clone())).unwrap_err();
    assert!(matches!(err, ExportError::NoGgufAdapter { .. }), "{err}");
    assert!(err.to_string().contains("`merged-gguf`"), "{err}");
    assert!(!file.exists());
    let peft = tmp.path().join("bone-peft");
    export(&bone, &options(ExportFormat::Peft, peft.clone())).unwrap();
    let bytes = std::fs::read(peft.join("adapter_model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let key = "base_model.model.model.layers.0.mlp.down_proj.miss_block";
    let hidden = ModelConfig::from_dir(&root().join("assets/models/tiny-llama"))
        .unwrap()
        .hidden_size;
    assert_eq!(st.tensor(key).unwrap().shape(), [hidden / 8, 8, 8]);
}

#[test]
fn wrong_requests_fail_clearly_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let out = tmp.path().join("out");

    let err = export(tmp.path(), &options(ExportFormat::Peft, out.clone())).unwrap_err();
    assert!(err.to_string().contains("not a run directory"), "{err}");

    let full = run_preset(
        &full_preset(tmp.path()),
        &runs,
        &["train.learning_rate=1e-4", "train.max_steps=1"],
    );
    for format in [ExportFormat::Peft, ExportFormat::Gguf] {
        let err = export(&full, &options(format, out.clone())).unwrap_err();
        assert!(matches!(err, ExportError::NotAnAdapter { .. }), "{err}");
        assert!(err.to_string().contains("export `merged`"), "{err}");
    }
    let mut step = options(ExportFormat::Merged, out.clone());
    step.checkpoint = CheckpointChoice::Step(7);
    let err = export(&full, &step).unwrap_err();
    assert!(
        err.to_string()
            .contains("no checkpoint step-7; it has steps 1"),
        "{err}"
    );
    // A full fine-tune merges by replacing the trained tensors.
    export(&full, &options(ExportFormat::Merged, out.clone())).unwrap();
    assert!(out.join("model.safetensors").is_file());

    // A run whose checkpoints are gone.
    std::fs::remove_dir_all(full.join("checkpoints")).unwrap();
    let err = export(&full, &options(ExportFormat::Merged, tmp.path().join("x"))).unwrap_err();
    assert!(matches!(err, ExportError::NoCheckpoints { .. }), "{err}");
    assert!(err.to_string().contains("has no checkpoint yet"), "{err}");

    // A failure (the base model's weights vanished) leaves no folder and
    // no temporary behind.
    let lora = short_run(&runs, &["train.max_steps=1"]);
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            root().join("assets/models/tiny-llama").join(f),
            base.join(f),
        )
        .unwrap();
    }
    let config_path = lora.join("config.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let original = root().join("assets/models/tiny-llama");
    std::fs::write(
        &config_path,
        text.replace(&original.display().to_string(), &base.display().to_string()),
    )
    .unwrap();
    let dest = tmp.path().join("merged");
    let err = export(&lora, &options(ExportFormat::Merged, dest.clone())).unwrap_err();
    assert!(err.to_string().contains("safetensors"), "{err}");
    assert!(!dest.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A run on a GGUF base (the llama fixture holds every quantized type; the
/// qwen2 one q/k/v biases and tied embeddings) exports like a run on a
/// folder: the merged folder has a config.json, tokenizer and chat
/// template written from the file's metadata and computes the adapted
/// logits; merged-gguf keeps the base's tokenizer; the PEFT card names the
/// GGUF file and how transformers loads it.
#[test]
fn exports_from_a_gguf_base() {
    for arch in ["llama", "qwen2"] {
        let tmp = tempfile::tempdir().unwrap();
        let base = root().join(format!("tests/fixtures/gguf/{arch}/model.gguf"));
        let run = short_run(
            &tmp.path().join("runs"),
            &[&format!("model.path={}", base.display())],
        );
        let merged = tmp.path().join("merged");
        export(&run, &options(ExportFormat::Merged, merged.clone())).unwrap();
        for f in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            assert!(merged.join(f).is_file(), "{arch}: merged folder lacks {f}");
        }
        assert_eq!(
            ModelConfig::from_dir(&merged).unwrap(),
            ModelConfig::from_dir(&base).unwrap(),
            "{arch}: config.json says what the GGUF metadata says"
        );
        // The fixtures' F16/BF16 tensors stay 16-bit in the merged folder.
        assert_close_logits(&run, &merged, 2e-2);
        let from_gguf = tunesmith::TextTokenizer::from_dir(&base).unwrap();
        let from_folder = tunesmith::TextTokenizer::from_dir(&merged).unwrap();
        let text = "Hello, Tunesmith! 12345 <- numbers";
        assert_eq!(
            from_gguf.encode(text, true).unwrap(),
            from_folder.encode(text, true).unwrap(),
            "{arch}: same token ids"
        );
        let chat = [
            tunesmith::ChatMessage::new("user", "Hi"),
            tunesmith::ChatMessage::new("assistant", "Hello."),
        ];
        assert_eq!(
            from_gguf.apply_chat_template(&chat, true).unwrap(),
            from_folder.apply_chat_template(&chat, true).unwrap(),
            "{arch}: same chat rendering"
        );

        let file = tmp.path().join("merged.gguf");
        export(&run, &options(ExportFormat::MergedGguf, file.clone())).unwrap();
        let g = gguf::File::parse(&std::fs::read(&file).unwrap()).unwrap();
        let source = tunesmith::gguf::GgufFile::open(&base).unwrap();
        assert_eq!(
            g.get("tokenizer.ggml.pre"),
            source
                .opt_str("tokenizer.ggml.pre")
                .unwrap()
                .map(|p| Value::Str(p.to_string()))
                .as_ref(),
            "{arch}: the base's pre-tokenizer name"
        );
        assert_eq!(
            token_ids(&file, text),
            token_ids(&base, text),
            "{arch}: merged-gguf tokenizes as its base"
        );

        let peft = tmp.path().join("peft");
        export(&run, &options(ExportFormat::Peft, peft.clone())).unwrap();
        let card = std::fs::read_to_string(peft.join("README.md")).unwrap();
        assert!(card.contains("gguf_file=\"model.gguf\""), "{card}");
        assert!(card.contains(&base.display().to_string()), "{card}");
    }
}

fn token_ids(model: &Path, text: &str) -> Vec<u32> {
    tunesmith::TextTokenizer::from_dir(model)
        .unwrap()
        .encode(text, true)
        .unwrap()
}
