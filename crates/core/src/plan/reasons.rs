//! The one-line reasons that plans show for each step.

use super::FieldChange;
use crate::model::{Weights, weights_display};

pub(super) fn describe(changes: &[FieldChange]) -> String {
    changes
        .iter()
        .map(|c| match &c.from {
            Some(from) => format!("{} {from} → {}", c.field, c.to),
            None => format!("{} → {}", c.field, c.to),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "flight green 10%", "full traffic to green", "drain all traffic", or the plain split.
pub(super) fn traffic_reason(from: &Weights, to: &Weights) -> String {
    let was = weights_display(from);
    if to.is_empty() {
        return format!("drain all traffic (was {was})");
    }
    if to.len() == 1 {
        let (name, _) = to.iter().next().expect("one entry");
        if from.is_empty() {
            return format!("route 100% to {name}");
        }
        return format!("full traffic to {name} (was {was})");
    }
    let new: Vec<(&String, &u32)> = to.iter().filter(|(n, _)| !from.contains_key(*n)).collect();
    if let [(name, weight)] = new.as_slice() {
        return format!("flight {name} {weight}% (was {was})");
    }
    format!("set traffic {} (was {was})", weights_display(to))
}

pub(super) fn mirror_reason(from: &Weights, to: &Weights) -> String {
    match (from.is_empty(), to.is_empty()) {
        (_, true) => format!("stop mirroring (was {})", weights_display(from)),
        (true, false) => format!("mirror {}", describe_mirror(to)),
        (false, false) => format!(
            "mirror {} (was {})",
            describe_mirror(to),
            describe_mirror(from)
        ),
    }
}

fn describe_mirror(w: &Weights) -> String {
    w.iter()
        .map(|(n, p)| format!("{p}% to {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
