//! Small HTML building blocks for the run report: escaping, data: URIs, tables.
//! Rejected: a template engine (one more dependency for a page of fixed shape).

use base64::Engine;

/// HTML-escapes text (element content and attribute values).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// An `<img>` holding PNG bytes inline.
pub fn img_png(bytes: &[u8], alt: &str, class: &str) -> String {
    format!(
        "<img class=\"{}\" alt=\"{}\" src=\"data:image/png;base64,{}\">",
        esc(class),
        esc(alt),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A table with a header row; cells are already HTML.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut o = String::from("<table><thead><tr>");
    for h in head {
        o.push_str(&format!("<th>{}</th>", esc(h)));
    }
    o.push_str("</tr></thead><tbody>");
    for r in rows {
        o.push_str("<tr>");
        for c in r {
            o.push_str(&format!("<td>{c}</td>"));
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>");
    o
}

/// A number for a table cell (`–` when absent or not finite).
pub fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "–".into(),
    }
}

/// The page's style sheet (inline: the report works offline).
pub const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#212529;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #dee2e6;padding-bottom:.2em;margin-top:1.6em}
h3{margin-bottom:.3em}.meta{color:#6c757d;font-size:.9em}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #dee2e6;border-radius:6px;padding:.6em 1em;min-width:12em}
.card .v{font-size:1.5em;font-weight:600}.card .k{color:#6c757d;font-size:.85em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border:1px solid #dee2e6;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f1f3f5}td:nth-child(4){white-space:nowrap}.ran{color:#2b8a3e}.cached{color:#868e96}.failed{color:#c92a2a;font-weight:600}.skipped{color:#e67700}
pre{background:#f8f9fa;border:1px solid #dee2e6;padding:.6em;overflow-x:auto;font-size:.85em}
.plots img{max-width:48%;border:1px solid #dee2e6;margin:.2em}.gallery{display:flex;flex-wrap:wrap;gap:.6em}
.tile{border:1px solid #dee2e6;border-radius:4px;padding:.3em;font-size:.8em;text-align:center}
.tile img{image-rendering:pixelated;display:block}.fail{border-left:4px solid #c92a2a;padding-left:.6em}
"#;
