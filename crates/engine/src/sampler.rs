//! Token sampling: a chain in llama.cpp's order — repetition/presence/frequency penalties →
//! top-k → top-p → min-p → temperature → draw — seeded, greedy at temperature 0.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sampling settings. The defaults are greedy decoding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    /// 0 = greedy (argmax).
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off.
    pub min_p: f32,
    /// 1.0 = off; > 1 discourages tokens seen in the last `penalty_last_n`.
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every token seen.
    pub presence_penalty: f32,
    /// Subtracted per occurrence.
    pub frequency_penalty: f32,
    pub penalty_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

/// A sampler with its own random stream.
pub struct Sampler {
    config: SamplerConfig,
    rng: StdRng,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Sampler { config, rng }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Picks the next token from one row of logits; `history` holds the tokens so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let c = &self.config;
        let mut logits = logits.to_vec();
        apply_penalties(&mut logits, history, c);
        if c.temperature <= 0.0 {
            return argmax(&logits);
        }
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if cand.is_empty() {
            return 0;
        }
        // top-k
        let k = if c.top_k == 0 {
            cand.len()
        } else {
            c.top_k.min(cand.len())
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            cand.truncate(k);
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1));
        // top-p on the untempered distribution
        if c.top_p < 1.0 {
            let probs = softmax(&cand.iter().map(|c| c.1).collect::<Vec<_>>());
            let mut cum = 0.0;
            let mut keep = cand.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        // min-p relative to the most likely candidate
        if c.min_p > 0.0 {
            let max = cand[0].1;
            let threshold = max + c.min_p.ln();
            let keep = cand.iter().take_while(|x| x.1 >= threshold).count().max(1);
            cand.truncate(keep);
        }
        // temperature, then draw
        let probs = softmax(&cand.iter().map(|x| x.1 / c.temperature).collect::<Vec<_>>());
        let r: f32 = self.rng.random();
        let mut cum = 0.0;
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if r < cum {
                return cand[i].0;
            }
        }
        cand[cand.len() - 1].0
    }
}

fn apply_penalties(logits: &mut [f32], history: &[u32], c: &SamplerConfig) {
    if c.repetition_penalty == 1.0 && c.presence_penalty == 0.0 && c.frequency_penalty == 0.0 {
        return;
    }
    let window = &history[history.len().saturating_sub(c.penalty_last_n)..];
    let mut counts: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for &t in window {
        *counts.entry(t).or_default() += 1;
    }
    for (&t, &n) in &counts {
        let Some(l) = logits.get_mut(t as usize) else {
            continue;
        };
        if *l > 0.0 {
            *l /= c.repetition_penalty;
        } else {
            *l *= c.repetition_penalty;
        }
        *l -= c.presence_penalty + c.frequency_penalty * n as f32;
    }
}

/// Index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32) -> SamplerConfig {
        SamplerConfig {
            temperature,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(cfg(0.0));
        assert_eq!(s.sample(&[0.1, 3.0, 2.9, -1.0], &[]), 1);
    }

    #[test]
    fn the_seed_makes_sampling_reproducible() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed,
                ..Default::default()
            });
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let mut s = Sampler::new(SamplerConfig {
            temperature: 5.0,
            top_k: 1,
            ..Default::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.0, 1.0, 0.9], &[]), 1);
        }
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // token 2 has probability e^-10 relative to the best: below min_p 0.05
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.05,
            ..Default::default()
        });
        for _ in 0..200 {
            assert_ne!(s.sample(&[10.0, 10.0, 0.0], &[]), 2);
        }
    }

    #[test]
    fn repetition_penalty_moves_greedy_away_from_seen_tokens() {
        let mut s = Sampler::new(SamplerConfig {
            repetition_penalty: 2.0,
            ..cfg(0.0)
        });
        assert_eq!(s.sample(&[3.0, 2.0], &[0]), 1);
        let mut p = Sampler::new(SamplerConfig {
            presence_penalty: 1.5,
            ..cfg(0.0)
        });
        assert_eq!(p.sample(&[3.0, 2.0], &[0]), 1);
    }
}
