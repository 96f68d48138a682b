//! The picture of a chaos run: a lane per candidate, each term a bar labelled with its
//! fencing token, the faults marked on the time axis, overlaps in red. Plain SVG.

use super::{RoundResult, oracle::Verdict};
use std::fmt::Write as _;

const LANE: f64 = 34.0;
const LEFT: f64 = 90.0;
const TOP: f64 = 40.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An SVG document for `verdict`, with `rounds` marked, `candidates` as lanes.
pub(crate) fn svg(title: &str, candidates: &[String], verdict: &Verdict, rounds: &[RoundResult]) -> String {
    let t0 = verdict.terms.iter().map(|t| t.start).chain(rounds.iter().map(|r| r.at)).fold(f64::INFINITY, f64::min);
    let t1 = verdict.terms.iter().map(|t| t.end).chain(rounds.iter().map(|r| r.at + r.held)).fold(f64::NEG_INFINITY, f64::max);
    let (t0, t1) = if t0.is_finite() && t1 > t0 { (t0, t1) } else { (0.0, 1.0) };
    let span = t1 - t0;
    let width = (span * 8.0).clamp(900.0, 12_000.0);
    let x = |t: f64| LEFT + (t - t0) / span * width;
    let height = TOP + LANE * candidates.len() as f64 + 60.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="8" y="18" font-size="13" font-weight="bold">{title}</text>
"#,
        w = LEFT + width + 20.0,
        title = escape(title)
    );
    for (i, name) in candidates.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        let _ = writeln!(
            out,
            r##"<text x="8" y="{:.0}">{}</text><line x1="{LEFT}" x2="{:.0}" y1="{:.0}" y2="{:.0}" stroke="#ddd"/>"##,
            y + 20.0,
            escape(name),
            LEFT + width,
            y + 16.0,
            y + 16.0
        );
    }
    for r in rounds {
        let (fx, hx) = (x(r.at), x(r.at + r.held));
        let _ = writeln!(
            out,
            r##"<rect x="{fx:.1}" y="{TOP}" width="{:.1}" height="{:.0}" fill="#f3e6ff" opacity="0.6"/><text x="{fx:.1}" y="{:.0}" fill="#6a3d9a">{}</text>"##,
            (hx - fx).max(1.0),
            LANE * candidates.len() as f64,
            TOP + LANE * candidates.len() as f64 + 14.0,
            escape(r.fault.name())
        );
    }
    for t in &verdict.terms {
        let Some(lane) = candidates.iter().position(|c| *c == t.identity) else { continue };
        let y = TOP + LANE * lane as f64 + 6.0;
        let (a, b) = (x(t.start), x(t.end).max(x(t.start) + 1.0));
        let _ = writeln!(
            out,
            r##"<rect x="{a:.1}" y="{y:.0}" width="{:.1}" height="20" fill="#4c9be8" stroke="#1f5f9e"><title>{} token {} pid {}: {:.2}s</title></rect><text x="{:.1}" y="{:.0}" fill="white">{}</text>"##,
            b - a,
            escape(&t.identity),
            t.token,
            t.pid,
            t.end - t.start,
            a + 2.0,
            y + 14.0,
            t.token
        );
    }
    for o in &verdict.overlaps {
        let a = x(o.second.start);
        let b = x(o.second.start + o.seconds).max(a + 2.0);
        let _ = writeln!(
            out,
            r##"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{:.0}" fill="red" opacity="0.55"><title>overlap {:.3}s: tokens {} and {}</title></rect>"##,
            b - a,
            LANE * candidates.len() as f64,
            o.seconds,
            o.first.token,
            o.second.token
        );
    }
    let axis_y = TOP + LANE * candidates.len() as f64 + 30.0;
    let step = [1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0].into_iter().find(|s| span / s <= 20.0).unwrap_or(1800.0);
    let mut tick = 0.0;
    while tick <= span {
        let tx = x(t0 + tick);
        let _ = writeln!(
            out,
            r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{:.0}" y2="{:.0}" stroke="#999"/><text x="{tx:.1}" y="{:.0}" fill="#555">{tick:.0}s</text>"##,
            axis_y - 6.0,
            axis_y,
            axis_y + 14.0
        );
        tick += step;
    }
    out.push_str("</svg>\n");
    out
}
