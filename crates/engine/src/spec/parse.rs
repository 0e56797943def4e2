//! The pipeline loader's driver: [`parse`] reads the YAML (with its positions) and runs the
//! passes of [`PASSES`] in order over one shared [`Parse`]; each pass reads what the earlier
//! ones left there and records every problem it finds as an issue at a line and column, so
//! that all problems of a file are reported at once, before anything runs.
//!
//! A pass is a plain `fn(&mut Parse)`: adding one (e.g. `foreach`/`matrix` families, which
//! expand between the variables and the kinds) is one function and one line in the list.
//! Issues are sorted by position at the end, so a pass may record them in any order; issues
//! at the same position keep the order in which the passes recorded them. Rejected: one
//! function with the passes as comments (478 lines no one could change safely), and passes
//! that return their results as values threaded through the driver (each new pass would
//! change every later signature).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;
use serde_yaml::Mapping;

use super::super::dag::Dag;
use super::super::registry::Registry;
use super::super::span::SpanIndex;
use super::super::spec_error::{SpecError, SpecIssue};
use super::stages::RawStage;
use super::{bind, document, families, params, stages, vars, Issues, Pipeline, StageSpec};

/// What the passes share: the document, the issues so far, and what each pass produced.
pub(super) struct Parse<'a> {
    /// `--set` overrides.
    pub(super) sets: &'a BTreeMap<String, Json>,
    /// The registered kinds.
    pub(super) registry: &'a Registry,
    /// Issues found so far, with the positions they are reported at.
    pub(super) is: Issues,
    /// The document's top-level mapping.
    pub(super) top: Mapping,
    /// (dotted path, text) of every `.nan`/`.inf` number (document pass).
    pub(super) non_finite: Vec<(String, String)>,
    /// `pipeline:` (document pass).
    pub(super) name: String,
    /// `description:` (document pass).
    pub(super) description: Option<String>,
    /// Variables after `--set` (vars pass).
    pub(super) vars: BTreeMap<String, Json>,
    /// The names of the variables the file declares (vars pass).
    pub(super) known_vars: Vec<String>,
    /// `stages:` as written (stages pass).
    pub(super) stages_map: Mapping,
    /// Stage names in file order (stages pass).
    pub(super) stage_names: Vec<String>,
    /// Each family's members in order (families pass), for `with:` lists that name a family.
    pub(super) families: BTreeMap<String, Vec<String>>,
    /// Stages with their kinds and needs, before their parameters are checked (kinds pass).
    pub(super) raws: Vec<RawStage>,
    /// The stage graph; `None` when `needs:` form a cycle (graph pass).
    pub(super) dag: Option<Dag>,
    /// Checked stages (params pass; bindings filled by the bindings pass).
    pub(super) stages: Vec<StageSpec>,
}

impl Parse<'_> {
    /// Whether a non-finite number sits at `base` or below it (in a family member: in its
    /// template).
    pub(super) fn has_non_finite(&self, base: &str) -> bool {
        let base = self.is.aliases.source(base);
        let below = format!("{base}.");
        self.non_finite
            .iter()
            .any(|(p, _)| *p == base || p.starts_with(&below))
    }
}

/// One pass of the loader.
type Pass = fn(&mut Parse<'_>);

/// The passes, in order.
const PASSES: &[Pass] = &[
    // top-level keys, `.nan`/`.inf`, `pipeline:` and `description:`
    document::header,
    // `vars:`, then `--set`
    vars::collect,
    // the `stages:` mapping
    stages::collect,
    // `foreach`/`matrix` families: their members replace them in the `stages:` mapping
    families::expand,
    // stage names: the character set and case-folded clashes
    stages::check_names,
    // each stage's keys, `uses:` and `needs:`
    stages::kinds,
    // cycles (over the `needs:` that name stages)
    stages::graph,
    // interpolation, `resources:` and each kind's typed parameters
    params::check,
    // named inputs bound to upstream stages
    bind::pass,
];

/// Parses pipeline text (see [`load`](super::load)).
pub fn parse(
    text: &str,
    file: &Path,
    workspace: &Path,
    sets: &BTreeMap<String, Json>,
    registry: &Registry,
) -> Result<Pipeline, SpecError> {
    let err = |issues| SpecError {
        file: file.into(),
        text: text.into(),
        issues,
    };
    let top = document::read(text).map_err(|issue| err(vec![*issue]))?;
    let mut st = Parse {
        sets,
        registry,
        is: Issues {
            spans: SpanIndex::build(text),
            list: Vec::new(),
            aliases: Default::default(),
        },
        top,
        non_finite: Vec::new(),
        name: String::new(),
        description: None,
        vars: BTreeMap::new(),
        known_vars: Vec::new(),
        stages_map: Mapping::new(),
        stage_names: Vec::new(),
        families: BTreeMap::new(),
        raws: Vec::new(),
        dag: None,
        stages: Vec::new(),
    };
    for pass in PASSES {
        pass(&mut st);
    }
    let mut list = st.is.list;
    match st.dag {
        // no issue: every pass found what it needed (a cycle is an issue)
        Some(dag) if list.is_empty() => Ok(Pipeline {
            name: st.name,
            description: st.description,
            file: file.into(),
            workspace: workspace.into(),
            vars: st.vars,
            stages: st.stages,
            dag,
        }),
        _ => {
            list.sort_by_key(|(_, p)| p.map(|p| (p.line, p.col)).unwrap_or((usize::MAX, 0)));
            Err(err(list))
        }
    }
}

/// An issue with no better place: the top of the file.
pub(super) fn at_top(message: &str) -> (SpecIssue, Option<super::super::span::Pos>) {
    (
        SpecIssue::Yaml {
            message: message.into(),
        },
        Some(super::super::span::Pos { line: 1, col: 1 }),
    )
}
