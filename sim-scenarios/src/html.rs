//! `plait-sim replay --html-out FILE`: the trace as a sequence diagram, one column per node and
//! one row per step, so a failing seed can be read like a message-sequence chart in a browser.

/// Renders readable trace lines (`<time> <node> <what>`) as a self-contained HTML page.
pub fn sequence_diagram(title: &str, lines: &[String]) -> String {
    let mut nodes: Vec<&str> = Vec::new();
    let rows: Vec<(&str, &str, &str)> = lines
        .iter()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            Some((parts.next()?, parts.next()?, parts.next().unwrap_or("")))
        })
        .collect();
    for (_, node, _) in &rows {
        if node.starts_with('n') && !nodes.contains(node) {
            nodes.push(node);
        }
    }
    let mut html = String::with_capacity(lines.len() * 120);
    html.push_str("<!doctype html><meta charset=utf-8><title>");
    html.push_str(&escape(title));
    html.push_str(
        "</title><style>body{font:12px monospace}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 4px;\
         vertical-align:top;max-width:28em;overflow-wrap:anywhere}th{position:sticky;top:0;background:#eee}\
         .send{color:#05a}.recv{color:#070}.persist{color:#a50}.life{font-weight:bold}.fault{background:#fdd}</style>",
    );
    html.push_str(&format!("<h3>{}</h3><table><tr><th>time</th>", escape(title)));
    for node in &nodes {
        html.push_str(&format!("<th>{node}</th>"));
    }
    html.push_str("<th>cluster</th></tr>");
    for (time, node, what) in rows {
        let class = match what {
            w if w.starts_with("->") => "send",
            w if w.starts_with("<-") => "recv",
            w if w.starts_with("persist") => "persist",
            "BOOT" | "CRASH" => "life",
            _ => "fault",
        };
        let column = nodes.iter().position(|n| *n == node).unwrap_or(nodes.len());
        html.push_str(&format!("<tr><td>{}</td>", escape(time)));
        for index in 0..=nodes.len() {
            if index == column {
                let text = if column == nodes.len() { format!("{node} {what}") } else { what.to_string() };
                html.push_str(&format!("<td class={class}>{}</td>", escape(&text)));
            } else {
                html.push_str("<td></td>");
            }
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_a_column_and_text_is_escaped() {
        let lines = vec!["5ms n1 -> n2 Prepare<x>".to_string(), "7ms n2 <- n1 Prepare".to_string(), "9ms heal".to_string()];
        let html = sequence_diagram("t", &lines);
        assert!(html.contains("<th>n1</th><th>n2</th><th>cluster</th>"));
        assert!(html.contains("Prepare&lt;x&gt;"));
        assert!(html.contains("<td class=recv>&lt;- n1 Prepare</td>"));
    }
}
