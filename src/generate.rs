//! Text generation with a KV cache: greedy or temperature/top-p sampling.

use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::model::{CausalLm, KvCache};

/// How the next token is picked.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    /// Always the most likely token (ties go to the lowest id, as argmax in
    /// PyTorch does).
    Greedy,
    /// Sample from softmax(logits / temperature), restricted to the smallest
    /// set of tokens whose probability reaches `top_p`.
    Sample {
        temperature: f32,
        top_p: f32,
        seed: u64,
    },
}

/// Options of one generation.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Generation ends after emitting one of these ids.
    pub stop_ids: Vec<u32>,
}

/// Errors of generation.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    #[error("token id {id} in the prompt is outside the model's vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error(
        "temperature must be > 0 and top_p in (0, 1] (got temperature {temperature}, top_p {top_p}); use greedy decoding for temperature 0"
    )]
    BadSampling { temperature: f32, top_p: f32 },
    #[error("reading logits from the device failed: {0}")]
    Readback(String),
}

/// Generates up to `max_new_tokens` after `prompt`, calling `on_token` with
/// each new id as soon as it is chosen. Returns the new ids (the stop token
/// included when one ended generation, as transformers does).
pub fn generate(
    model: &CausalLm,
    prompt: &[u32],
    options: &GenerateOptions,
    mut on_token: impl FnMut(u32),
) -> Result<Vec<u32>, GenerateError> {
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    let vocab = model.vocab_size();
    if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab) {
        return Err(GenerateError::TokenOutOfRange { id, vocab });
    }
    let mut sampler = Sampler::new(&options.sampling)?;
    let device = model.embed_tokens.val().device();
    let mut cache = KvCache::new();
    let mut input: Vec<u32> = prompt.to_vec();
    let mut out = Vec::with_capacity(options.max_new_tokens);
    while out.len() < options.max_new_tokens {
        let n = input.len();
        let ids: Vec<i64> = input.iter().map(|&t| t as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
        let logits = model
            .forward_last(tokens, Some(&mut cache))
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| GenerateError::Readback(format!("{e:?}")))?;
        let next = sampler.pick(&logits);
        out.push(next);
        on_token(next);
        if options.stop_ids.contains(&next) {
            break;
        }
        input = vec![next];
    }
    Ok(out)
}

struct Sampler {
    mode: Sampling,
    rng: StdRng,
}

impl Sampler {
    fn new(mode: &Sampling) -> Result<Self, GenerateError> {
        let seed = match *mode {
            Sampling::Greedy => 0,
            Sampling::Sample {
                temperature,
                top_p,
                seed,
            } => {
                let ok =
                    temperature > 0.0 && temperature.is_finite() && top_p > 0.0 && top_p <= 1.0;
                if !ok {
                    return Err(GenerateError::BadSampling { temperature, top_p });
                }
                seed
            }
        };
        Ok(Self {
            mode: mode.clone(),
            rng: StdRng::seed_from_u64(seed),
        })
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        match self.mode {
            Sampling::Greedy => argmax(logits),
            Sampling::Sample {
                temperature, top_p, ..
            } => {
                let u: f64 = rand::RngExt::random(&mut self.rng);
                sample_top_p(logits, temperature, top_p, u)
            }
        }
    }
}

/// Index of the largest value, the first one on ties.
fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Draws a token given a uniform number `u` in [0, 1): softmax at
/// `temperature`, keep the most likely tokens until their mass reaches
/// `top_p`, renormalise, and invert the cumulative distribution.
fn sample_top_p(logits: &[f32], temperature: f32, top_p: f32, u: f64) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, (((l - max) / temperature) as f64).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0;
    let mut mass = 0.0;
    for p in &probs {
        kept += 1;
        mass += p.1 / total;
        if mass >= top_p as f64 {
            break;
        }
    }
    let probs = &probs[..kept];
    let kept_total: f64 = probs.iter().map(|p| p.1).sum();
    let mut acc = 0.0;
    for p in probs {
        acc += p.1 / kept_total;
        if u < acc {
            return p.0;
        }
    }
    probs[kept - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn top_p_restricts_to_the_nucleus() {
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]
        let logits = [3.0, 2.0, 1.0, 0.0];
        for i in 0..100 {
            let u = i as f64 / 100.0;
            let t = sample_top_p(&logits, 1.0, 0.8, u);
            assert!(t == 0 || t == 1, "token {t} outside the 0.8 nucleus");
        }
        assert_eq!(sample_top_p(&logits, 1.0, 0.5, 0.99), 0);
    }

    #[test]
    fn low_temperature_approaches_greedy() {
        let logits = [0.0, 1.0, 0.5];
        assert_eq!(sample_top_p(&logits, 0.01, 1.0, 0.999), 1);
    }
}
