//! Deterministic traffic split for the data plane [AML §5, §7.7]: a smooth weighted
//! round-robin over the live `traffic` weights (so 90/10 over 100 requests is exactly 90/10),
//! and an evenly spread counter for the mirror share (R7).

use std::collections::BTreeMap;

/// Per-endpoint routing memory. It resets whenever the weights it was built for change.
#[derive(Debug, Default, Clone)]
pub struct RoutingState {
    weights: BTreeMap<String, u32>,
    current: BTreeMap<String, i64>,
    mirror_percent: u32,
    mirror_seen: u64,
}

impl RoutingState {
    /// Picks the deployment for the next request without a deployment header, or `None` when
    /// no deployment has a positive weight (R17). Ties go to the first name in order.
    pub fn pick(&mut self, traffic: &BTreeMap<String, u32>) -> Option<String> {
        let positive: BTreeMap<String, u32> = traffic
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(k, w)| (k.clone(), *w))
            .collect();
        if positive.is_empty() {
            return None;
        }
        if positive != self.weights {
            self.current = positive.keys().map(|k| (k.clone(), 0)).collect();
            self.weights = positive;
        }
        let total: i64 = self.weights.values().map(|w| i64::from(*w)).sum();
        let mut best: Option<(String, i64)> = None;
        for (name, w) in &self.weights {
            let cur = self.current.entry(name.clone()).or_insert(0);
            *cur += i64::from(*w);
            if best.as_ref().is_none_or(|(_, b)| *cur > *b) {
                best = Some((name.clone(), *cur));
            }
        }
        let (chosen, _) = best?;
        if let Some(cur) = self.current.get_mut(&chosen) {
            *cur -= total;
        }
        Some(chosen)
    }

    /// Whether the next non-header request is mirrored, for a mirror share of `percent`:
    /// request n (1-based) is mirrored when floor(n·p/100) advances, so exactly p of every
    /// 100 requests are mirrored, spread evenly.
    pub fn mirror_next(&mut self, percent: u32) -> bool {
        if percent != self.mirror_percent {
            self.mirror_percent = percent;
            self.mirror_seen = 0;
        }
        if percent == 0 {
            return false;
        }
        let p = u64::from(percent.min(100));
        let before = self.mirror_seen * p / 100;
        self.mirror_seen += 1;
        let after = self.mirror_seen * p / 100;
        after > before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, w)| (k.to_string(), *w)).collect()
    }

    fn count(
        state: &mut RoutingState,
        traffic: &BTreeMap<String, u32>,
        n: usize,
    ) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for _ in 0..n {
            *out.entry(state.pick(traffic).unwrap()).or_default() += 1;
        }
        out
    }

    #[test]
    fn ninety_ten_over_a_hundred_requests_is_exactly_ninety_ten() {
        let mut s = RoutingState::default();
        let c = count(&mut s, &weights(&[("blue", 90), ("green", 10)]), 100);
        assert_eq!(c["blue"], 90);
        assert_eq!(c["green"], 10);
    }

    #[test]
    fn split_is_smooth_not_bursty() {
        let mut s = RoutingState::default();
        let t = weights(&[("blue", 50), ("green", 50)]);
        let picks: Vec<String> = (0..4).map(|_| s.pick(&t).unwrap()).collect();
        assert_eq!(picks, ["blue", "green", "blue", "green"]);
    }

    #[test]
    fn zero_weights_route_nowhere() {
        let mut s = RoutingState::default();
        assert_eq!(s.pick(&weights(&[("blue", 0)])), None);
        assert_eq!(s.pick(&BTreeMap::new()), None);
    }

    #[test]
    fn a_weight_change_restarts_the_cycle() {
        let mut s = RoutingState::default();
        let _ = count(&mut s, &weights(&[("blue", 90), ("green", 10)]), 37);
        let c = count(&mut s, &weights(&[("blue", 70), ("green", 30)]), 100);
        assert_eq!((c["blue"], c["green"]), (70, 30));
    }

    #[test]
    fn mirror_share_is_exact_per_hundred() {
        let mut s = RoutingState::default();
        let mirrored = (0..100).filter(|_| s.mirror_next(10)).count();
        assert_eq!(mirrored, 10);
        let mirrored = (0..200).filter(|_| s.mirror_next(25)).count();
        assert_eq!(mirrored, 50);
        assert!(!(0..10).any(|_| s.mirror_next(0)));
    }
}
