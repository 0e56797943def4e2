//! `luna stages [KIND]`: the registered kinds, or one kind's parameters (from its schema).

use clap::Args;

use super::CliError;

/// Arguments of `luna stages`.
#[derive(Debug, Args)]
pub struct StagesArgs {
    /// Show this kind's parameters.
    kind: Option<String>,
}

/// Runs the command.
pub fn cmd(a: StagesArgs) -> Result<i32, CliError> {
    let reg = crate::stages::registry();
    let Some(name) = a.kind else {
        let w = reg.names().iter().map(|n| n.len()).max().unwrap_or(0);
        for k in reg.kinds() {
            println!("{:w$}  v{}  {}", k.name(), k.version(), k.doc());
        }
        println!("\n`luna stages KIND` shows a kind's parameters.");
        return Ok(0);
    };
    let Some(kind) = reg.get(&name) else {
        let known: Vec<String> = reg.names().iter().map(|s| s.to_string()).collect();
        let dym = crate::engine::suggest::nearest(&name, known.iter().map(String::as_str))
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        return Err(CliError::usage(
            format!("unknown stage kind `{name}`"),
            Some(format!("{dym}known kinds: {}", known.join(", "))),
        ));
    };
    println!(
        "{} (version {}): {}",
        kind.name(),
        kind.version(),
        kind.doc()
    );
    if !kind.outputs().is_empty() {
        println!("provides: {}", kind.outputs().join(", "));
    }
    let schema = serde_json::to_value(kind.schema()).unwrap_or_default();
    let props = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .cloned()
        .unwrap_or_default();
    let required: Vec<String> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    println!("parameters (under `with:`):");
    let w = props.keys().map(|k| k.len()).max().unwrap_or(0);
    for (k, v) in &props {
        let ty = type_of(&schema, v);
        // A hint serializes as null (it never enters the cache key), so its schema default says
        // nothing about the value used; the description states that.
        let is_hint = v
            .get("$ref")
            .and_then(|r| r.as_str())
            .is_some_and(|r| r.rsplit('/').next().is_some_and(|n| n.starts_with("Hint")));
        let def = v
            .get("default")
            .filter(|_| !is_hint)
            .map(|d| format!(", default {d}"))
            .unwrap_or_default();
        let req = if required.contains(k) {
            ", required"
        } else {
            ""
        };
        let desc = v
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("")
            .replace('\n', " ");
        println!("  {k:w$}  {ty}{req}{def}\n  {:w$}  {desc}", "");
    }
    Ok(0)
}

fn type_of(root: &serde_json::Value, v: &serde_json::Value) -> String {
    if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or(r);
        let inner = root
            .get("$defs")
            .and_then(|d| d.get(name))
            .map(|d| type_of(root, d))
            .unwrap_or_else(|| name.to_string());
        return if name.starts_with("Hint") {
            format!("{inner} (hint: not part of the cache key)")
        } else {
            inner
        };
    }
    if let Some(e) = v.get("enum").and_then(|e| e.as_array()) {
        let vals: Vec<String> = e.iter().map(|x| x.to_string()).collect();
        return format!("one of {}", vals.join(" | "));
    }
    if let Some(c) = v.get("const") {
        return c.to_string();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = v.get(key).and_then(|a| a.as_array()) {
            let parts: Vec<String> = alts
                .iter()
                .map(|a| type_of(root, a))
                .filter(|t| t != "null")
                .collect();
            let optional = alts
                .iter()
                .any(|a| a.get("type").and_then(|t| t.as_str()) == Some("null"));
            let joined = parts.join(" | ");
            return if optional {
                format!("{joined} (optional)")
            } else {
                joined
            };
        }
    }
    match v.get("type") {
        Some(serde_json::Value::Array(a)) => {
            let ts: Vec<&str> = a
                .iter()
                .filter_map(|x| x.as_str())
                .filter(|t| *t != "null")
                .collect();
            let optional = a.iter().any(|x| x.as_str() == Some("null"));
            format!(
                "{}{}",
                ts.join(" | "),
                if optional { " (optional)" } else { "" }
            )
        }
        Some(serde_json::Value::String(t)) if t == "array" => {
            let item = v
                .get("items")
                .map(|i| type_of(root, i))
                .unwrap_or_else(|| "any".into());
            match (v.get("minItems"), v.get("maxItems")) {
                (Some(a), Some(b)) if a == b => format!("[{item}; {a}]"),
                _ => format!("list of {item}"),
            }
        }
        Some(serde_json::Value::String(t)) => t.clone(),
        _ => "any".into(),
    }
}
