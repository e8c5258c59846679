//! Rotary position embeddings in Hugging Face's "rotate half" layout (burn's
//! own `RotaryEncoding` interleaves pairs, which does not fit HF weights).

use burn::tensor::{Device, Tensor, TensorData};

use super::{ModelConfig, RopeScaling};

/// Inverse frequencies of one model, with its scaling applied.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(config: &ModelConfig) -> Self {
        let dim = config.head_dim;
        // transformers computes base^(2i/dim) in float32; rounding each
        // frequency to f32 keeps us within an ulp of it.
        let base: Vec<f64> = (0..dim / 2)
            .map(|i| {
                let exponent = ((2 * i) as f32 / dim as f32) as f64;
                1.0 / config.rope_theta.powf(exponent)
            })
            .collect();
        let inv_freq = match &config.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Factors(factors) => base.iter().zip(factors).map(|(f, k)| f / k).collect(),
            &RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            &RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_len,
            } => {
                let low_freq_wavelen = old_len / low_freq_factor;
                let high_freq_wavelen = old_len / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_freq_wavelen {
                            f
                        } else if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            let smooth = (old_len / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        Self {
            inv_freq: inv_freq.into_iter().map(|f| f as f32).collect(),
        }
    }

    /// cos and sin tables of shape [1, 1, len, head_dim] for positions
    /// `offset..offset+len`.
    pub fn tables(&self, offset: usize, len: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let positions: Vec<usize> = (offset..offset + len).collect();
        self.tables_at(&positions, [1, len], device)
    }

    /// cos and sin tables of shape [batch, 1, len, head_dim] for the
    /// position of each token (`positions` is [batch, len] row-major;
    /// packed sequences restart at 0 for each example).
    pub fn tables_at(
        &self,
        positions: &[usize],
        [batch, len]: [usize; 2],
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let half = self.inv_freq.len();
        let dim = 2 * half;
        let mut cos = Vec::with_capacity(positions.len() * dim);
        let mut sin = Vec::with_capacity(positions.len() * dim);
        for &pos in positions {
            let start = cos.len();
            for &f in &self.inv_freq {
                // The angle is an f32 product in transformers as well.
                let angle = (f * pos as f32) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
            cos.extend_from_within(start..start + half);
            sin.extend_from_within(start..start + half);
        }
        (
            Tensor::from_data(TensorData::new(cos, [batch, 1, len, dim]), device),
            Tensor::from_data(TensorData::new(sin, [batch, 1, len, dim]), device),
        )
    }
}

/// Applies rope to `x` of shape [batch, heads, len, head_dim] with tables
/// of shape [batch or 1, 1, len, head_dim].
pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [_, _, _, dim] = x.dims();
    let half = dim / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;
    use std::path::Path;

    fn config(scaling: &str) -> ModelConfig {
        ModelConfig::from_json(
            &format!(
                r#"{{"model_type":"llama","vocab_size":8,"hidden_size":64,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":2,"rope_theta":500000.0{scaling}}}"#
            ),
            Path::new("config.json"),
        )
        .unwrap()
    }

    #[test]
    fn llama3_keeps_high_and_divides_low_frequencies() {
        let plain = Rope::new(&config(""));
        let scaled = Rope::new(&config(
            r#","rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":64}"#,
        ));
        // The first frequency has the shortest wavelength: untouched.
        assert_eq!(plain.inv_freq[0], scaled.inv_freq[0]);
        // The last has a wavelength far beyond 64 positions: divided by 8.
        let last = plain.inv_freq.len() - 1;
        let ratio = plain.inv_freq[last] / scaled.inv_freq[last];
        assert!((ratio - 8.0).abs() < 1e-4, "{ratio}");
    }
}
