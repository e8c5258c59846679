//! `tunesmith generate`: continue prompts with a model — one prompt or a
//! file of them, the fine-tuned model alone or beside its base (what the
//! quickstart shows at its end).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use tunesmith::generate::{GenerateOptions, Sampling, generate};
use tunesmith::{CausalLm, ChatMessage, TextTokenizer};

use crate::{AdapterArg, BackendArg, PrecisionArg, load, model_dir};

/// Arguments of `tunesmith generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// The model folder (optional with --adapter).
    #[arg(long, required_unless_present = "adapter")]
    model: Option<PathBuf>,
    #[command(flatten)]
    adapter: AdapterArg,
    /// The prompt text (repeatable: each is answered in turn).
    #[arg(long, required_unless_present = "prompts")]
    prompt: Vec<String>,
    /// A file of prompts, one per line (blank lines and lines starting
    /// with `#` are skipped).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// With --adapter: answer each prompt with the base model too, and
    /// print the two answers one under the other.
    #[arg(long, requires = "adapter")]
    compare_base: bool,
    /// Send the prompt as a user message through the model's chat template.
    #[arg(long)]
    chat: bool,
    /// With --chat: a system message to put first.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Stop after this many new tokens.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Always take the most likely token (the default unless --temperature
    /// is given).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "seed"])]
    greedy: bool,
    /// Sample with this temperature (> 0).
    #[arg(long)]
    temperature: Option<f32>,
    /// Sample only from the most likely tokens that cover this probability
    /// mass (0 < p <= 1).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Random seed for sampling; the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep generating past end-of-turn tokens, up to --max-new-tokens
    /// (for timing decoding at a fixed length).
    #[arg(long)]
    ignore_eos: bool,
    #[command(flatten)]
    backend: BackendArg,
    #[command(flatten)]
    precision: PrecisionArg,
}

impl GenerateArgs {
    /// The --prompt values, then the --prompts file's lines.
    fn all_prompts(&self) -> Result<Vec<String>> {
        let mut prompts = self.prompt.clone();
        if let Some(file) = &self.prompts {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the prompts file {}", file.display()))?;
            prompts.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
            if prompts.is_empty() {
                bail!(
                    "{} holds no prompts (one per line; # starts a comment)",
                    file.display()
                );
            }
        }
        Ok(prompts)
    }
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let sampling = match args.temperature {
        Some(temperature) if !args.greedy => Sampling::Sample {
            temperature,
            top_p: args.top_p,
            seed: args.seed,
        },
        _ => Sampling::Greedy,
    };
    let prompts = args.all_prompts()?;
    let dir = model_dir(&args.model, &args.adapter)?;
    let mut tokenizer = TextTokenizer::from_dir(&dir)?;
    if args.chat && tokenizer.use_fallback_template(tunesmith::tokenizer::CHATML_TEMPLATE) {
        eprintln!(
            "warning: {} has no chat template; using ChatML, as training does by default",
            dir.display()
        );
    }
    let mut encoded = Vec::with_capacity(prompts.len());
    for prompt in &prompts {
        let ids = if args.chat {
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage::new("system", system.as_str()));
            }
            messages.push(ChatMessage::new("user", prompt.as_str()));
            tokenizer.encode_chat(&messages, true)?.1
        } else {
            tokenizer.encode(prompt, true)?
        };
        if ids.is_empty() {
            bail!("the prompt {prompt:?} produced no tokens");
        }
        encoded.push(ids);
    }
    let (model, _) = load(
        &dir,
        &args.adapter,
        args.backend.backend,
        args.precision.dtype,
    )?;
    let base = if args.compare_base {
        let (base, _) = load(
            &dir,
            &AdapterArg::default(),
            args.backend.backend,
            args.precision.dtype,
        )?;
        Some(base)
    } else {
        None
    };
    let options = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        stop_ids: if args.ignore_eos {
            Vec::new()
        } else {
            tokenizer.stop_ids().to_vec()
        },
    };
    let labelled = base.is_some();
    for (prompt, ids) in prompts.iter().zip(&encoded) {
        if prompts.len() > 1 || labelled {
            println!("> {prompt}");
        }
        if let Some(base) = &base {
            answer(base, &tokenizer, ids, &options, Some("base:  "))?;
        }
        answer(
            &model,
            &tokenizer,
            ids,
            &options,
            labelled.then_some("tuned: "),
        )?;
        if prompts.len() > 1 || labelled {
            println!();
        }
    }
    Ok(())
}

/// Generates one answer, streaming it to stdout after `label` (whose width
/// indents the answer's later lines), and its speed to stderr.
fn answer(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    prompt_ids: &[u32],
    options: &GenerateOptions,
    label: Option<&str>,
) -> Result<()> {
    let indent = format!("\n{}", " ".repeat(label.map_or(0, str::len)));
    let mut stdout = std::io::stdout();
    if let Some(label) = label {
        let _ = write!(stdout, "{label}");
    }
    let start = Instant::now();
    let mut stream = tunesmith::chat::TextStream::default();
    let result = generate(model, prompt_ids, options, |id| {
        if let Some(text) = stream.push(tokenizer, id) {
            let text = if label.is_some() {
                text.replace('\n', &indent)
            } else {
                text
            };
            let _ = write!(stdout, "{text}");
            let _ = stdout.flush();
        }
    })?;
    println!();
    let secs = start.elapsed().as_secs_f32();
    eprintln!(
        "{} token(s) in {secs:.2}s ({:.1} tokens/s)",
        result.len(),
        result.len() as f32 / secs.max(1e-6)
    );
    Ok(())
}
