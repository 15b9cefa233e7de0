//! Charts drawn on the server as SVG: the timeline with its now-line, horizontal bars (the
//! funnel), stacked columns per day (sends, free and paid), and columns per day (the shop's
//! GMV). Every text inside is escaped; sizes are in the viewBox, so a chart scales with its box.

use std::fmt::Write as _;

/// `&`, `<`, `>`, `"` and `'` escaped, for text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// One bar of the timeline.
#[derive(Debug, Clone)]
pub struct Span {
    /// 0: phases, 1: stages.
    pub row: usize,
    pub label: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

const WIDTH: f64 = 1000.0;

/// The phases on one row and the burst's stages under them, with a line at `now_ms` when it
/// falls in the campaign.
pub fn timeline(spans: &[Span], now_ms: i64) -> String {
    let Some(first) = spans.iter().map(|span| span.start_ms).min() else {
        return String::new();
    };
    let last = spans.iter().map(|span| span.end_ms).max().unwrap_or(first);
    let length = (last - first).max(1) as f64;
    let x = |ms: i64| ((ms - first) as f64 / length * (WIDTH - 20.0) + 10.0).clamp(0.0, WIDTH);
    let mut out = format!(
        r#"<svg class="timeline" viewBox="0 0 {WIDTH} 96" role="img" aria-label="timeline" preserveAspectRatio="none">"#
    );
    for (index, span) in spans.iter().enumerate() {
        let y = 8.0 + span.row as f64 * 40.0;
        let (left, right) = (x(span.start_ms), x(span.end_ms));
        let current = span.start_ms <= now_ms && now_ms < span.end_ms;
        let class = match (span.row, current) {
            (0, true) => "phase current",
            (0, false) => "phase",
            (_, true) => "stage current",
            (_, false) => "stage",
        };
        let _ = write!(
            out,
            r#"<g class="{class}"><rect x="{left:.1}" y="{y:.1}" width="{:.1}" height="30" rx="4"><title>{}</title></rect><text x="{:.1}" y="{:.1}" class="n{index}">{}</text></g>"#,
            (right - left - 2.0).max(1.0),
            escape(&span.label),
            left + 6.0,
            y + 20.0,
            escape(&span.label)
        );
    }
    if first <= now_ms && now_ms <= last {
        let at = x(now_ms);
        let _ = write!(
            out,
            r#"<line class="now" x1="{at:.1}" x2="{at:.1}" y1="0" y2="96"/><text class="now" x="{:.1}" y="94">now</text>"#,
            (at + 4.0).min(WIDTH - 30.0)
        );
    }
    out.push_str("</svg>");
    out
}

/// Horizontal bars, one per item (label, value, the value as written), scaled to the largest.
pub fn bars(items: &[(String, u64, String)]) -> String {
    bars_in(items, WIDTH)
}

/// [`bars`] in a box `width` units wide: a narrower box draws its text larger.
pub fn bars_in(items: &[(String, u64, String)], width: f64) -> String {
    let most = items
        .iter()
        .map(|(_, value, _)| *value)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let height = 10 + items.len() * 34;
    let label = (width * 0.22).round();
    let room = width - label - 170.0;
    let mut out = format!(
        r#"<svg class="bars" viewBox="0 0 {width} {height}" role="img" aria-label="bars">"#
    );
    for (index, (name, value, written)) in items.iter().enumerate() {
        let y = 6 + index * 34;
        let length = (*value as f64 / most * room).max(2.0);
        let _ = write!(
            out,
            r#"<text x="0" y="{}" class="label">{}</text><rect x="{label}" y="{y}" width="{length:.1}" height="24" rx="3" class="bar b{index}"/><text x="{:.1}" y="{}" class="value">{}</text>"#,
            y + 17,
            escape(name),
            label + length + 8.0,
            y + 17,
            escape(written)
        );
    }
    out.push_str("</svg>");
    out
}

/// Columns per day, each stacked from its parts (e.g. free, then paid); `legend` names the
/// parts in order. Days are labelled by their last five characters (`09-03`).
pub fn stacked_days(days: &[(String, Vec<u64>)], legend: &[&str]) -> String {
    if days.is_empty() {
        return String::new();
    }
    let most = days
        .iter()
        .map(|(_, parts)| parts.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = (WIDTH - 60.0) / days.len() as f64;
    let width = (step * 0.7).max(1.0);
    let mut out = format!(
        r#"<svg class="columns" viewBox="0 0 {WIDTH} 230" role="img" aria-label="per day">"#
    );
    let _ = write!(
        out,
        r#"<text x="0" y="14" class="axis">{}</text>"#,
        plan_number(most as u64)
    );
    for (index, (day, parts)) in days.iter().enumerate() {
        let x = 50.0 + index as f64 * step;
        let mut y = 200.0;
        for (part, value) in parts.iter().enumerate() {
            let height = *value as f64 / most * 180.0;
            y -= height;
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{height:.1}" class="part p{part}"><title>{} {}: {}</title></rect>"#,
                escape(day),
                escape(legend.get(part).copied().unwrap_or("")),
                value
            );
        }
        if days.len() <= 16 || index % (days.len() / 12 + 1) == 0 {
            let label: String = day
                .chars()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="220" class="axis">{}</text>"#,
                x,
                escape(&label)
            );
        }
    }
    for (part, name) in legend.iter().enumerate() {
        let x = WIDTH - 200.0 + part as f64 * 100.0;
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="4" width="12" height="12" class="part p{part}"/><text x="{:.1}" y="14" class="axis">{}</text>"#,
            x + 16.0,
            escape(name)
        );
    }
    out.push_str("</svg>");
    out
}

fn plan_number(value: u64) -> String {
    battleplan_core::plan::values::grouped(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests report failures by panicking")]
mod tests {
    use super::*;

    #[test]
    fn text_in_a_chart_is_escaped() {
        let svg = bars(&[("<script>".to_string(), 3, "3 & more".to_string())]);
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(svg.contains("3 &amp; more"), "{svg}");
        assert!(!svg.contains("<script>"));
    }

    #[test]
    fn the_now_line_is_drawn_only_inside_the_timeline() {
        let spans = [Span {
            row: 0,
            label: "prep".to_string(),
            start_ms: 0,
            end_ms: 100,
        }];
        assert!(timeline(&spans, 50).contains(r#"class="now""#));
        assert!(!timeline(&spans, 500).contains(r#"class="now""#));
        assert!(timeline(&[], 50).is_empty());
    }
}
