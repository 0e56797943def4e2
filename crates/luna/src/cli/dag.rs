//! `luna dag NAME`: the stage graph as a text tree, Graphviz dot or Mermaid.

use clap::{Args, ValueEnum};

use super::workspace::open;
use super::{CliError, Globals, PipelineArgs};
use crate::engine::spec::Pipeline;

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Indented tree.
    Text,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Arguments of `luna dag`.
#[derive(Debug, Args)]
pub struct DagArgs {
    #[command(flatten)]
    p: PipelineArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Runs the command.
pub fn cmd(g: &Globals, a: DagArgs) -> Result<i32, CliError> {
    let o = open(g, &a.p)?;
    print!("{}", render(&o.pipeline, a.format));
    Ok(0)
}

/// Renders the graph.
pub fn render(p: &Pipeline, f: Format) -> String {
    let d = &p.dag;
    let mut out = String::new();
    match f {
        Format::Dot => {
            out.push_str(&format!("digraph \"{}\" {{\n  rankdir=LR;\n", p.name));
            for (i, s) in p.stages.iter().enumerate() {
                out.push_str(&format!(
                    "  \"{}\" [label=\"{}\\n({})\"];\n",
                    s.name,
                    s.name,
                    s.kind.name()
                ));
                for &j in d.deps(i) {
                    out.push_str(&format!("  \"{}\" -> \"{}\";\n", p.stages[j].name, s.name));
                }
            }
            out.push_str("}\n");
        }
        Format::Mermaid => {
            out.push_str("graph TD\n");
            let id = |n: &str| n.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
            for (i, s) in p.stages.iter().enumerate() {
                out.push_str(&format!(
                    "  {}[\"{}<br/>({})\"]\n",
                    id(&s.name),
                    s.name,
                    s.kind.name()
                ));
                for &j in d.deps(i) {
                    out.push_str(&format!(
                        "  {} --> {}\n",
                        id(&p.stages[j].name),
                        id(&s.name)
                    ));
                }
            }
        }
        Format::Text => {
            out.push_str(&format!("{}\n", p.name));
            let roots: Vec<usize> = (0..d.len()).filter(|&i| d.deps(i).is_empty()).collect();
            let mut seen = vec![false; d.len()];
            for (k, &r) in roots.iter().enumerate() {
                tree(p, r, "", k + 1 == roots.len(), &mut seen, &mut out);
            }
        }
    }
    out
}

fn tree(p: &Pipeline, i: usize, prefix: &str, last: bool, seen: &mut [bool], out: &mut String) {
    let s = &p.stages[i];
    let branch = if last { "└── " } else { "├── " };
    let more = if p.dag.deps(i).len() > 1 {
        let others: Vec<&str> = p
            .dag
            .deps(i)
            .iter()
            .map(|&j| p.stages[j].name.as_str())
            .collect();
        format!(" ← {}", others.join(", "))
    } else {
        String::new()
    };
    if seen[i] {
        out.push_str(&format!("{prefix}{branch}{} (see above)\n", s.name));
        return;
    }
    seen[i] = true;
    out.push_str(&format!(
        "{prefix}{branch}{} ({}){more}\n",
        s.name,
        s.kind.name()
    ));
    let kids = p.dag.dependents(i);
    let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
    for (k, &c) in kids.iter().enumerate() {
        tree(p, c, &child_prefix, k + 1 == kids.len(), seen, out);
    }
}
