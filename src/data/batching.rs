//! Examples -> micro-batches: packing of short examples into one sequence,
//! and the order of each epoch (shuffled, optionally grouped by length).

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{Example, IGNORE};

/// Concatenates examples into sequences of at most `max_length` tokens
/// (best fit, longest first; deterministic). Each packed sequence records
/// its examples' lengths in `segments`, and the label that would predict
/// one example's first token from the previous example's last is ignored,
/// so the loss of a packed sequence is the sum of its examples' losses.
pub fn pack(examples: Vec<Example>, max_length: usize) -> Vec<Example> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    // Longest first, ties by file position, so the result is a function of
    // the data alone.
    order.sort_by_key(|&i| (std::cmp::Reverse(examples[i].ids.len()), examples[i].line));
    // (room left, bin) of open bins: the tightest bin that fits is found in
    // log time.
    let mut room: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut bins: Vec<Vec<usize>> = Vec::new();
    for i in order {
        let len = examples[i].ids.len();
        let fit = room.range((len, 0)..).next().copied();
        match fit {
            Some((left, bin)) => {
                room.remove(&(left, bin));
                bins[bin].push(i);
                if left > len {
                    room.insert((left - len, bin));
                }
            }
            None => {
                bins.push(vec![i]);
                if max_length > len {
                    room.insert((max_length - len, bins.len() - 1));
                }
            }
        }
    }
    let mut slots: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
    let mut packed: Vec<Example> = bins
        .into_iter()
        .map(|bin| {
            let mut out = Example {
                ids: Vec::new(),
                labels: Vec::new(),
                line: usize::MAX,
                segments: Vec::with_capacity(bin.len()),
            };
            for i in bin {
                let Some(ex) = slots[i].take() else { continue };
                let first = out.labels.len();
                out.ids.extend_from_slice(&ex.ids);
                out.labels.extend_from_slice(&ex.labels);
                out.labels[first] = IGNORE;
                out.segments.push(ex.ids.len() as u32);
                out.line = out.line.min(ex.line);
            }
            out
        })
        .collect();
    packed.sort_by_key(|e| e.line);
    packed
}

/// The micro-batches of one epoch as indices into `lengths`: shuffled by
/// (seed, epoch) alone, so a resumed run sees the same order. With
/// `group_by_length`, rows of similar length share a micro-batch (less
/// padding): the shuffled order is cut into mega-batches of 32
/// micro-batches, each sorted by length, and the resulting batches are
/// shuffled again, the one holding the longest row first (memory trouble
/// shows at the first step, not hours in).
pub fn epoch_batches(
    lengths: &[usize],
    micro_batch: usize,
    seed: u64,
    epoch: usize,
    group_by_length: bool,
) -> Vec<Vec<usize>> {
    let micro_batch = micro_batch.max(1);
    let mixed = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = StdRng::seed_from_u64(mixed);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    if !group_by_length {
        return order.chunks(micro_batch).map(<[usize]>::to_vec).collect();
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for mega in order.chunks_mut(micro_batch * 32) {
        mega.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(mega.chunks(micro_batch).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    let longest = batches
        .iter()
        .enumerate()
        .max_by_key(|(_, b)| b.iter().map(|&i| lengths[i]).max().unwrap_or(0))
        .map(|(k, _)| k);
    if let Some(k) = longest {
        batches.swap(0, k);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(len: usize, line: usize) -> Example {
        Example {
            ids: vec![line as u32; len],
            labels: vec![line as i64; len],
            line,
            segments: Vec::new(),
        }
    }

    #[test]
    fn packing_keeps_every_token_and_respects_the_limit() {
        let lens = [5, 3, 8, 2, 7, 1, 4];
        let examples: Vec<Example> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| ex(l, i + 1))
            .collect();
        let packed = pack(examples, 10);
        let total: usize = packed.iter().map(|p| p.ids.len()).sum();
        assert_eq!(total, lens.iter().sum::<usize>());
        for p in &packed {
            assert!(p.ids.len() <= 10);
            assert_eq!(p.segments.iter().sum::<u32>() as usize, p.ids.len());
            // Each segment's first label is ignored, the rest kept.
            let mut at = 0;
            for &s in &p.segments {
                assert_eq!(p.labels[at], IGNORE);
                assert!(
                    p.labels[at + 1..at + s as usize]
                        .iter()
                        .all(|&l| l != IGNORE)
                );
                at += s as usize;
            }
        }
        // 30 tokens into bins of 10: best fit needs only three.
        assert_eq!(packed.len(), 3);
    }

    #[test]
    fn an_example_longer_than_the_limit_gets_its_own_sequence() {
        let packed = pack(vec![ex(12, 1), ex(3, 2)], 10);
        assert_eq!(packed.len(), 2);
    }

    #[test]
    fn epochs_cover_every_row_once_and_group_lengths() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 7919) % 500 + 1).collect();
        for grouped in [false, true] {
            let batches = epoch_batches(&lengths, 4, 3, 1, grouped);
            let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..1000).collect::<Vec<_>>());
            assert_eq!(batches, epoch_batches(&lengths, 4, 3, 1, grouped));
            assert_ne!(batches, epoch_batches(&lengths, 4, 3, 2, grouped));
        }
        let padding = |batches: &[Vec<usize>]| -> usize {
            batches
                .iter()
                .map(|b| {
                    let max = b.iter().map(|&i| lengths[i]).max().unwrap_or(0);
                    b.iter().map(|&i| max - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        let grouped = epoch_batches(&lengths, 4, 3, 1, true);
        let plain = epoch_batches(&lengths, 4, 3, 1, false);
        assert!(padding(&grouped) * 5 < padding(&plain));
        let longest = lengths.iter().max().copied().unwrap_or(0);
        assert!(grouped[0].iter().any(|&i| lengths[i] == longest));
    }
}
