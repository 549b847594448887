//! Turning logits into ranked predictions.

/// One ranked class.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// Class index.
    pub index: usize,
    /// Softmax probability.
    pub prob: f32,
}

/// Numerically stable softmax of one logit row (computed in f64).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// The `k` most probable classes of one logit row, most probable first (ties: lower
/// index first, as `torch.topk` on CPU returns them).
pub fn top_k(logits: &[f32], k: usize) -> Vec<Ranked> {
    let probs = softmax(logits);
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|index| Ranked {
            index,
            prob: probs[index],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_hand_computed_values() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        // e^1, e^2, e^3 normalised: 0.09003057, 0.24472847, 0.66524096
        assert!((p[0] - 0.090_030_57).abs() < 1e-7);
        assert!((p[1] - 0.244_728_47).abs() < 1e-7);
        assert!((p[2] - 0.665_240_96).abs() < 1e-7);
    }

    #[test]
    fn top_k_orders_by_probability() {
        let r = top_k(&[0.5, 3.0, -1.0, 3.0], 3);
        assert_eq!(r.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1, 3, 0]);
    }
}
