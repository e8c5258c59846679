//! A LoRA-family run as exports write it: PEFT's pairs (A as (r, in), B as
//! (out, r), DoRA's magnitude), and for PiSSA the rank-2r adapter on the
//! original base that PEFT's conversion makes.

use std::collections::BTreeMap;

use super::{LoraConfig, LoraInit, init_key, transpose};
use crate::methods::exported::{ExportForm, GgufRefusal, LoraPair, ModuleTensors};
use crate::methods::{MethodError, MethodState};
use crate::train::params::HostTensor;

impl LoraConfig {
    /// The pairs of `adapters` in PEFT's layout, turned into the adapter
    /// [`LoraConfig::exported`] describes.
    pub(crate) fn lora_form(
        &self,
        adapters: BTreeMap<String, ModuleTensors>,
        state: &MethodState,
    ) -> Result<ExportForm, MethodError> {
        let mut pairs = BTreeMap::new();
        for (module, mut parts) in adapters {
            let mut take = |part: &str| parts.remove(part);
            let (Some(a), Some(b)) = (take("lora.a"), take("lora.b")) else {
                return Err(MethodError::Export {
                    module,
                    reason: "only half of its LoRA pair is in the checkpoint".into(),
                });
            };
            let magnitude = take("lora.magnitude");
            if magnitude.is_some() != self.use_dora {
                return Err(MethodError::Export {
                    module,
                    reason: "its DoRA magnitude does not match method.use_dora".into(),
                });
            }
            if let Some(extra) = parts.keys().next() {
                return Err(MethodError::Export {
                    reason: format!("adapter.{extra} is not a LoRA tensor"),
                    module,
                });
            }
            let mut pair = LoraPair {
                a: peft_layout(&a, &module)?,
                b: peft_layout(&b, &module)?,
                magnitude,
            };
            if self.init.decomposes() {
                pair = self.on_original_base(pair, &module, state)?;
            }
            pairs.insert(module, pair);
        }
        let notes = self.decomposed_note().into_iter().collect();
        let gguf_refusal = self.use_dora.then(|| GgufRefusal {
            method: "DoRA".into(),
            what: "its magnitude vector, which rescales each output of the merged weight".into(),
        });
        Ok(ExportForm {
            lora: Some((self.exported(), pairs)),
            gguf_refusal,
            notes,
            ..ExportForm::default()
        })
    }

    /// What a PiSSA or CorDA run's adapter is, for the export notes and
    /// the card.
    fn decomposed_note(&self) -> Option<String> {
        let method = match self.init {
            LoraInit::Pissa => "PiSSA",
            LoraInit::Corda => "CorDA",
            LoraInit::Default => return None,
        };
        Some(format!(
            "trained with {method} at rank {r} on the residual of the base; saved as PEFT \
             converts such an adapter, a plain LoRA of rank {r2} (the trained pair and the \
             negated initial one) that applies to the original base",
            r = self.rank,
            r2 = 2 * self.rank
        ))
    }

    /// PiSSA and CorDA trained `A·B` on the residual `W − s·A₀·B₀`: on the original
    /// base that is the rank-2r pair `[A; A₀]` (PEFT's A, rows) and
    /// `[B, −B₀]` (PEFT's B, columns).
    fn on_original_base(
        &self,
        pair: LoraPair,
        module: &str,
        state: &MethodState,
    ) -> Result<LoraPair, MethodError> {
        let rank = self.rank;
        let get = |part| {
            let key = init_key(module, part);
            state.get(&key).ok_or_else(|| MethodError::State {
                key: key.clone(),
                reason: "the initial adapter is missing from the checkpoint".into(),
            })
        };
        let a0 = peft_layout(get('a')?, module)?;
        let b0 = peft_layout(get('b')?, module)?;
        if a0.shape != pair.a.shape || b0.shape != pair.b.shape || pair.rank() != rank {
            return Err(MethodError::Export {
                module: module.to_string(),
                reason: "the initial adapter does not fit the trained one".into(),
            });
        }
        let mut a = pair.a.data;
        a.extend_from_slice(&a0.data);
        let out = pair.b.shape[0];
        let b = (0..out)
            .flat_map(|o| {
                let row = &pair.b.data[o * rank..(o + 1) * rank];
                let row0 = &b0.data[o * rank..(o + 1) * rank];
                row.iter().copied().chain(row0.iter().map(|v| -v))
            })
            .collect();
        Ok(LoraPair {
            a: HostTensor {
                shape: vec![2 * rank, pair.a.shape[1]],
                data: a,
            },
            b: HostTensor {
                shape: vec![out, 2 * rank],
                data: b,
            },
            magnitude: pair.magnitude,
        })
    }
}

/// Ours are A [in, r] and B [r, out]; PEFT stores the transposes.
fn peft_layout(t: &HostTensor, module: &str) -> Result<HostTensor, MethodError> {
    let [rows, cols] = t.shape[..] else {
        return Err(MethodError::Export {
            module: module.to_string(),
            reason: format!("expected a matrix, found shape {:?}", t.shape),
        });
    };
    Ok(HostTensor {
        shape: vec![cols, rows],
        data: transpose(&t.data, rows, cols),
    })
}
