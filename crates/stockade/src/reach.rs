//! `stockade reach`: the fleet reachability matrix as JSON, Graphviz DOT or a standalone HTML
//! page a person can open.

use std::fmt::Write as _;

use policy::reach::{Class, Reach};
use serde_json::{json, Value};

fn class_name(k: usize) -> String {
    format!("c{k}")
}

fn groups(c: &Class) -> String {
    c.groups
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `{"Services", "Classes": [{"Id", "Groups", "Instances"}], "Edges": [{"From", "To", "Services"}]}`.
pub(crate) fn json(r: &Reach) -> Value {
    json!({
        "Services": r.services.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "Classes": r.classes.iter().enumerate().map(|(k, c)| json!({
            "Id": class_name(k),
            "Groups": c.groups.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "Instances": c.instances.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "Edges": r.edges().map(|(s, d)| json!({
            "From": class_name(s),
            "To": class_name(d),
            "Services": r.allowed(s, d).map(|i| r.services[i].name()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// A Graphviz digraph: one node per class, one labelled edge per reaching pair.
pub(crate) fn dot(r: &Reach) -> String {
    let mut out = String::from(
        "digraph reach {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for (k, c) in r.classes.iter().enumerate() {
        let shown: Vec<String> = c
            .instances
            .iter()
            .take(4)
            .map(ToString::to_string)
            .collect();
        let more = if c.instances.len() > 4 {
            format!("\\n… {} more", c.instances.len() - 4)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {} [label=\"{}\\n{}\\n{}{}\"];",
            class_name(k),
            class_name(k),
            groups(c),
            shown.join("\\n"),
            more
        );
    }
    for (s, d) in r.edges() {
        let label: Vec<String> = r.allowed(s, d).map(|i| r.services[i].name()).collect();
        let _ = writeln!(
            out,
            "  {} -> {} [label=\"{}\"];",
            class_name(s),
            class_name(d),
            label.join(" ")
        );
    }
    out.push_str("}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained page: the class × class matrix (darker = more services open, the
/// services in each cell), then each class's groups and instances.
pub(crate) fn html(r: &Reach) -> String {
    let n = r.classes.len();
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Stockade reachability</title><style>\
         body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:4px 6px;font-size:12px;vertical-align:top}\
         th{background:#f4f4f4}.legend td{border:none}</style></head><body>\
         <h1>Reachability</h1><p>Rows: source class; columns: destination class. A cell lists the \
         services the sources can open on the destinations (egress and ingress both allow). \
         Instances in one class cannot be told apart by any rule.</p><table><tr><th>from \\ to</th>",
    );
    for k in 0..n {
        let _ = write!(
            out,
            "<th title=\"{}\">{}</th>",
            escape(&groups(&r.classes[k])),
            class_name(k)
        );
    }
    out.push_str("</tr>");
    for s in 0..n {
        let _ = write!(
            out,
            "<tr><th title=\"{}\">{}</th>",
            escape(&groups(&r.classes[s])),
            class_name(s)
        );
        for d in 0..n {
            let ks: Vec<usize> = r.allowed(s, d).collect();
            let share = ks.len() as f64 / r.services.len().max(1) as f64;
            let names: Vec<String> = ks.iter().map(|i| r.services[*i].name()).collect();
            let _ = write!(
                out,
                "<td style=\"background:rgba(200,40,40,{:.2})\">{}</td>",
                0.08 + 0.6 * share * f64::from(u8::from(!ks.is_empty())),
                escape(&names.join(" "))
            );
        }
        out.push_str("</tr>");
    }
    out.push_str(
        "</table><h2>Classes</h2><table><tr><th>class</th><th>groups</th><th>instances</th></tr>",
    );
    for (k, c) in r.classes.iter().enumerate() {
        let list: Vec<String> = c.instances.iter().map(ToString::to_string).collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            class_name(k),
            escape(&groups(c)),
            escape(&list.join(", "))
        );
    }
    out.push_str("</table></body></html>\n");
    out
}
