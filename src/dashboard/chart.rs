//! A gate's readings over the current stage's bake as inline SVG: the measured values as a
//! line with a dot per reading, the threshold as a dashed line with its value written beside
//! it, and the verdict as text under the chart (the colour only repeats it).

use std::fmt::Write;

use super::board::GateSeries;
use super::render::esc;

const W: f64 = 320.0;
const H: f64 = 110.0;
const PAD: f64 = 6.0;

pub fn gate(out: &mut String, g: &GateSeries) {
    let class = match g.verdict {
        "pass" => "ok",
        "fail" => "bad",
        _ => "warn",
    };
    out.push_str("<figure class=\"gate\" data-gate=\"");
    esc(out, &g.gate);
    let _ = writeln!(out, "\" data-verdict=\"{}\">", g.verdict);
    let mut label = format!("gate {}: {} readings", g.gate, g.points.len());
    if let Some(t) = g.threshold {
        let _ = write!(label, ", threshold {}", number(t));
    }
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\""
    );
    esc(out, &label);
    out.push_str("\">");
    out.push_str("<rect class=\"frame\" x=\"0\" y=\"0\" width=\"320\" height=\"110\"/>");
    let max = g
        .points
        .iter()
        .map(|(_, v)| *v)
        .chain(g.threshold)
        .fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max * 1.2 } else { 1.0 };
    let y = |v: f64| H - PAD - (v / top) * (H - 2.0 * PAD);
    let (first, last) = match (g.points.front(), g.points.back()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => (
            chrono::DateTime::<chrono::Utc>::MIN_UTC,
            chrono::DateTime::<chrono::Utc>::MIN_UTC,
        ),
    };
    let span = (last - first).num_milliseconds().max(1) as f64;
    let x = |at: chrono::DateTime<chrono::Utc>| {
        if g.points.len() < 2 {
            W / 2.0
        } else {
            PAD + ((at - first).num_milliseconds() as f64 / span) * (W - 2.0 * PAD)
        }
    };
    if let Some(t) = g.threshold.filter(|t| t.is_finite()) {
        let ty = y(t);
        let _ = write!(
            out,
            "<line class=\"threshold\" x1=\"0\" y1=\"{ty:.1}\" x2=\"{W}\" y2=\"{ty:.1}\"/>\
             <text class=\"tlabel\" x=\"{:.1}\" y=\"{:.1}\">threshold {}</text>",
            W - PAD,
            (ty - 3.0).max(10.0),
            number(t)
        );
    }
    if !g.points.is_empty() {
        out.push_str("<polyline class=\"series\" points=\"");
        for (at, v) in &g.points {
            let _ = write!(out, "{:.1},{:.1} ", x(*at), y(*v));
        }
        out.push_str("\"/>");
        for (at, v) in &g.points {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"/>",
                x(*at),
                y(*v)
            );
        }
    }
    out.push_str("</svg>\n<figcaption>");
    let _ = write!(out, "<span class=\"badge {class}\">{}</span> ", g.verdict);
    esc(out, &g.gate);
    out.push_str(": ");
    esc(out, &g.describe);
    if let Some(stage) = g.stage {
        let _ = write!(out, " (stage {stage})");
    }
    out.push_str("</figcaption>\n</figure>\n");
}

/// A reading as people read it: at most 4 significant decimals.
fn number(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}
