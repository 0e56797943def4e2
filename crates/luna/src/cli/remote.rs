//! `luna remote add | list | remove`: the `[remotes.NAME]` tables of `luna.toml`, edited in
//! place (comments kept), and [`open`], which every command that talks to a remote uses.

use std::path::Path;

use clap::Subcommand;

use super::workspace::workspace_here;
use super::CliError;
use crate::config::remote::{choose, name_problem, url_problem, DEFAULT_JOBS};
use crate::config::Config;
use crate::engine::remote::{Inventory, Remote, RemoteSpec};

/// `luna remote` subcommands.
#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Add (or with --force replace) a remote in luna.toml.
    Add {
        /// Name commands use (`--remote NAME`).
        name: String,
        /// s3://BUCKET/PREFIX or file:///ABSOLUTE/PATH.
        url: String,
        /// S3 endpoint of a non-AWS server, e.g. http://10.0.0.5:9000.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// S3 region.
        #[arg(long)]
        region: Option<String>,
        /// AWS profile (~/.aws/credentials).
        #[arg(long)]
        profile: Option<String>,
        /// Make it the default remote ([cache] remote).
        #[arg(long)]
        default: bool,
        /// Replace a remote of the same name.
        #[arg(long)]
        force: bool,
    },
    /// List the remotes of luna.toml.
    List,
    /// Remove a remote from luna.toml (its objects stay where they are).
    Remove {
        /// The remote.
        name: String,
    },
}

/// What `remote add` writes.
struct NewRemote {
    name: String,
    url: String,
    endpoint: Option<String>,
    region: Option<String>,
    profile: Option<String>,
    default: bool,
    force: bool,
}

/// Runs the command.
pub fn cmd(c: RemoteCmd) -> Result<i32, CliError> {
    let ws = workspace_here()?;
    match c {
        RemoteCmd::Add {
            name,
            url,
            endpoint,
            region,
            profile,
            default,
            force,
        } => add(
            &ws,
            NewRemote {
                name,
                url,
                endpoint,
                region,
                profile,
                default,
                force,
            },
        ),
        RemoteCmd::List => list(&ws),
        RemoteCmd::Remove { name } => remove(&ws, &name),
    }
}

/// `remote add`.
fn add(ws: &Path, r: NewRemote) -> Result<i32, CliError> {
    let NewRemote {
        name,
        url,
        endpoint,
        region,
        profile,
        default,
        force,
    } = r;
    if let Some(p) = name_problem(&name) {
        return Err(CliError::usage(
            p,
            Some("e.g. `luna remote add team s3://bucket/luna`".into()),
        ));
    }
    if let Some(p) = url_problem(&url) {
        return Err(CliError::usage(
            format!("remote `{name}`: bad URL {url}: {p}"),
            Some("a remote URL is s3://BUCKET/PREFIX or file:///ABSOLUTE/PATH".into()),
        ));
    }
    if let Some(e) = endpoint
        .as_deref()
        .filter(|e| !(e.starts_with("http://") || e.starts_with("https://")))
    {
        return Err(CliError::usage(
            format!("remote `{name}`: endpoint {e} is not an http:// or https:// URL"),
            Some("e.g. --endpoint http://127.0.0.1:9000".into()),
        ));
    }
    let edited = crate::config::edit(ws, |doc| {
        let remotes = doc
            .entry("remotes")
            .or_insert_with(|| {
                let mut t = toml_edit::Table::new();
                t.set_implicit(true);
                toml_edit::Item::Table(t)
            })
            .as_table_mut()
            .ok_or("`remotes` in luna.toml is not a table")?;
        if remotes.contains_key(&name) && !force {
            return Err(format!(
                "remote `{name}` exists already (pass --force to replace it)"
            ));
        }
        let mut t = toml_edit::Table::new();
        t.insert("url", toml_edit::value(url.clone()));
        for (k, v) in [
            ("endpoint", &endpoint),
            ("region", &region),
            ("profile", &profile),
        ] {
            if let Some(v) = v {
                t.insert(k, toml_edit::value(v.clone()));
            }
        }
        remotes.insert(&name, toml_edit::Item::Table(t));
        if default {
            let cache = doc
                .entry("cache")
                .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
                .as_table_mut()
                .ok_or("`cache` in luna.toml is not a table")?;
            cache.insert("remote", toml_edit::value(name.clone()));
        }
        Ok(())
    })?;
    edited.map_err(|why| CliError::usage(why, Some("see `luna remote list`".into())))?;
    println!(
        "added remote {name} ({url}) to {}",
        Config::path(ws).display()
    );
    Ok(0)
}

/// `remote list`.
fn list(ws: &Path) -> Result<i32, CliError> {
    let config = Config::load(ws)?;
    if config.remotes.is_empty() {
        println!("no remotes (add one with `luna remote add NAME URL`)");
    }
    for (name, r) in &config.remotes {
        let default = config.cache.remote.as_deref() == Some(name.as_str())
            || (config.cache.remote.is_none() && config.remotes.len() == 1);
        let mut extra = Vec::new();
        if let Some(e) = &r.endpoint {
            extra.push(format!("endpoint {e}"));
        }
        if let Some(e) = &r.region {
            extra.push(format!("region {e}"));
        }
        if let Some(e) = &r.profile {
            extra.push(format!("profile {e}"));
        }
        println!(
            "{name}\t{}{}{}",
            r.url,
            if extra.is_empty() {
                String::new()
            } else {
                format!("\t({})", extra.join(", "))
            },
            if default { "\t[default]" } else { "" }
        );
    }
    Ok(0)
}

/// `remote remove`.
fn remove(ws: &Path, name: &str) -> Result<i32, CliError> {
    let edited = crate::config::edit(ws, |doc| {
        let removed = doc
            .get_mut("remotes")
            .and_then(|r| r.as_table_mut())
            .and_then(|t| t.remove(name));
        if removed.is_none() {
            return Err(format!("unknown remote `{name}`"));
        }
        if let Some(cache) = doc.get_mut("cache").and_then(|c| c.as_table_mut()) {
            if cache.get("remote").and_then(|r| r.as_str()) == Some(name) {
                cache.remove("remote");
            }
        }
        Ok(())
    })?;
    edited.map_err(|why| CliError::usage(why, Some("see `luna remote list`".into())))?;
    println!("removed remote {name}");
    Ok(0)
}

/// Opens the remote a command uses (`asked`, else the config's default) and checks that it
/// answers (one LIST): an unknown name, a bad URL, an unreachable server, refused
/// credentials or a missing bucket end the command here with exit code 2, before anything
/// changed.
pub fn open(config: &Config, asked: Option<&str>) -> Result<(Remote, Inventory), CliError> {
    let (name, rc) =
        choose(config, asked).map_err(|(msg, hint)| CliError::usage(msg, Some(hint)))?;
    if let Some(p) = url_problem(&rc.url) {
        return Err(CliError::usage(
            format!("remote `{name}`: bad URL {}: {p}", rc.url),
            Some(format!("fix it with `luna remote add {name} URL --force`")),
        ));
    }
    let remote = Remote::open(&RemoteSpec {
        name,
        url: rc.url.clone(),
        endpoint: rc.endpoint.clone(),
        region: rc.region.clone(),
        profile: rc.profile.clone(),
        jobs: rc.jobs.unwrap_or(DEFAULT_JOBS),
        multipart_bytes: rc.multipart_mib.map(|m| m.saturating_mul(1 << 20)),
    })?;
    remote.set_events(super::console::transfer_sink());
    let inv = remote.inventory()?;
    Ok((remote, inv))
}
