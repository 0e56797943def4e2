//! Pipeline spec errors: what is wrong, where (file:line:column) and what is allowed.
//! All issues of a file are collected before anything runs, then rendered together with a
//! source line and a caret, like rustc and just do.

use std::fmt;
use std::path::PathBuf;

use super::span::Pos;
use super::spec::{outside_family_hint, FamilyProblem};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecIssue {
    /// YAML syntax or shape error reported by the parser.
    Yaml {
        /// serde_yaml's message.
        message: String,
    },
    /// A key luna does not know.
    UnknownKey {
        /// Dotted path of the key.
        path: String,
        /// The keys allowed there.
        allowed: Vec<String>,
    },
    /// `uses:` names no registered kind.
    UnknownKind {
        /// Stage name.
        stage: String,
        /// The kind written.
        kind: String,
        /// Registered kinds.
        known: Vec<String>,
    },
    /// `needs:` names a stage that does not exist.
    MissingNeed {
        /// Stage name.
        stage: String,
        /// The missing target.
        target: String,
        /// Stages that exist.
        known: Vec<String>,
    },
    /// The stages depend on each other in a cycle.
    Cycle {
        /// The cycle as a closed path (`a → b → a`).
        cycle: Vec<String>,
    },
    /// A parameter under `with:` is unknown to the stage's kind.
    UnknownParam {
        /// Full path, e.g. `stages.train.with.lrr`.
        path: String,
        /// Kind name.
        kind: String,
        /// Allowed parameters at that level.
        known: Vec<String>,
    },
    /// A parameter has the wrong type or an invalid value.
    BadParam {
        /// Full path, e.g. `stages.train.with.lr`.
        path: String,
        /// What was expected.
        message: String,
    },
    /// A parameter under `with:` has the wrong type or an invalid value for its kind.
    InvalidParam {
        /// Full path, e.g. `stages.train.with.lr`.
        path: String,
        /// Kind name.
        kind: String,
        /// What was expected and what was found.
        message: String,
    },
    /// `${name}` refers to no variable.
    UnknownVar {
        /// Variable name.
        name: String,
        /// Path of the value that uses it.
        path: String,
        /// Declared variables.
        known: Vec<String>,
    },
    /// `--set name=value` names no declared variable.
    UnknownSetVar {
        /// Variable name.
        name: String,
        /// Declared variables.
        known: Vec<String>,
    },
    /// A pipeline or stage name outside [`NAME_RULE`].
    BadName {
        /// `pipeline`, `stage` or `family`.
        what: &'static str,
        /// The name as written.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Two stage names that differ only in case or in `-` versus `_` (they would share one
    /// environment variable, e.g. `LUNA_IN_A_B`, in `command` stages).
    NameClash {
        /// The earlier stage.
        first: String,
        /// The later stage.
        second: String,
    },
    /// `.nan`, `.inf` or `-.inf` where luna takes only finite numbers.
    NonFinite {
        /// Dotted path of the value.
        path: String,
        /// The value as YAML writes it.
        value: String,
    },
    /// A named input has no upstream that provides it, or names a stage that cannot provide
    /// it (another artifact type, or not an upstream of the stage).
    Input {
        /// Stage name.
        stage: String,
        /// The input (e.g. `model`).
        input: String,
        /// The artifact type it takes (e.g. `model`).
        artifact: String,
        /// What is wrong.
        problem: InputProblem,
        /// Stages of the pipeline that produce that artifact type.
        providers: Vec<String>,
    },
    /// An either-or input (`InputSlot::alternative`) with no alternative bound, or several.
    InputChoice {
        /// Stage name.
        stage: String,
        /// What the group supplies (e.g. `marks`).
        group: String,
        /// The alternatives: (input, artifact type, stages that provide it).
        alternatives: Vec<(String, String, Vec<String>)>,
        /// The alternatives that would be bound (input, stage); empty = none can be.
        bound: Vec<(String, String)>,
        /// Whether those were named in `with:` (else found among the upstreams).
        named: bool,
    },
    /// A stage family (`foreach:`/`matrix:`) that cannot be expanded, or a member that
    /// cannot be made (spec/families.rs).
    Family {
        /// The family's name (empty for a problem of the file as a whole).
        family: String,
        /// What is wrong.
        problem: FamilyProblem,
    },
}

/// The characters a pipeline or stage name may have (they become file names, run ids and
/// environment variable names), as the hint states them.
pub const NAME_RULE: &str = "names are 1 to 64 characters: ASCII letters, digits, `_` and `-`, starting with a letter or digit";

/// Why a stage's named input could not be bound to an upstream.
#[derive(Debug, Clone, PartialEq)]
pub enum InputProblem {
    /// Not named, and no upstream produces the artifact type.
    Missing,
    /// Not named, and several direct upstreams produce it.
    Ambiguous(Vec<String>),
    /// Named a stage of another kind.
    WrongKind {
        /// The stage named.
        named: String,
        /// Its kind.
        kind: String,
        /// The artifact types that kind produces.
        produces: Vec<String>,
    },
    /// Named a stage that is not upstream of this one.
    NotUpstream(String),
    /// Named no stage of the pipeline.
    NoSuchStage(String),
    /// Named twice in one list (`predictions: [a, a]` would pool `a` twice).
    Repeated(String),
    /// Named for an input that is used only with another input, which is not bound.
    Unused {
        /// The stage named.
        named: String,
        /// The input it goes with.
        lead: String,
    },
}

/// `a, b or c`.
fn either(items: &[String]) -> String {
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => items.join(""),
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

impl fmt::Display for SpecIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecIssue::Yaml { message } => write!(f, "{message}"),
            SpecIssue::UnknownKey { path, .. } => write!(f, "unknown key `{path}`"),
            SpecIssue::UnknownKind { stage, kind, .. } => {
                write!(f, "stage `{stage}` uses unknown stage kind `{kind}`")
            }
            SpecIssue::MissingNeed { stage, target, .. } => {
                write!(
                    f,
                    "stage `{stage}` needs `{target}`, which is not a stage of this pipeline"
                )
            }
            SpecIssue::Cycle { cycle } => write!(
                f,
                "stages depend on each other in a cycle: {}",
                cycle.join(" → ")
            ),
            SpecIssue::UnknownParam { path, kind, .. } => {
                write!(f, "{path}: unknown parameter for kind `{kind}`")
            }
            SpecIssue::BadParam { path, message }
            | SpecIssue::InvalidParam { path, message, .. } => {
                write!(f, "{path}: {message}")
            }
            SpecIssue::UnknownVar { name, path, .. } => {
                write!(f, "{path}: unknown variable `${{{name}}}`")
            }
            SpecIssue::UnknownSetVar { name, .. } => write!(
                f,
                "--set {name}: the pipeline declares no variable `{name}`"
            ),
            SpecIssue::BadName {
                what,
                name,
                problem,
            } => write!(f, "invalid {what} name `{}`: {problem}", name.escape_debug()),
            SpecIssue::NameClash { first, second } => write!(
                f,
                "stage names `{first}` and `{second}` differ only in case or in `-` versus `_`"
            ),
            SpecIssue::NonFinite { path, value } => {
                write!(f, "{path}: `{value}` is not a finite number")
            }
            SpecIssue::Family { family, problem } if family.is_empty() => write!(f, "{problem}"),
            SpecIssue::Family { family, problem } => write!(f, "family `{family}`: {problem}"),
            SpecIssue::Input {
                stage,
                input,
                artifact,
                problem,
                ..
            } => match problem {
                InputProblem::Missing => write!(
                    f,
                    "stage `{stage}` needs a `{artifact}` artifact for its input `{input}`, but no upstream stage provides one"
                ),
                InputProblem::Ambiguous(c) => write!(
                    f,
                    "stage `{stage}`: several upstream stages provide a `{artifact}` for its input `{input}`: {}",
                    c.join(", ")
                ),
                InputProblem::WrongKind {
                    named,
                    kind,
                    produces,
                } => write!(
                    f,
                    "stage `{stage}`: `{input}: {named}` names a `{kind}` stage, which provides {}, not a `{artifact}`",
                    if produces.is_empty() {
                        "no typed artifact".to_string()
                    } else {
                        produces.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                    }
                ),
                InputProblem::NotUpstream(named) => write!(
                    f,
                    "stage `{stage}`: `{input}: {named}` names a stage that is not upstream of `{stage}`"
                ),
                InputProblem::NoSuchStage(named) => write!(
                    f,
                    "stage `{stage}`: `{input}: {named}` names no stage of this pipeline"
                ),
                InputProblem::Repeated(named) => write!(
                    f,
                    "stage `{stage}`: `{input}` names `{named}` twice"
                ),
                InputProblem::Unused { named, lead } => write!(
                    f,
                    "stage `{stage}`: `{input}: {named}` is used only together with the input `{lead}`, which is not bound"
                ),
            },
            SpecIssue::InputChoice {
                stage,
                group,
                alternatives,
                bound,
                ..
            } => {
                let names: Vec<String> = alternatives.iter().map(|a| format!("`{}`", a.0)).collect();
                if bound.is_empty() {
                    let typed: Vec<String> = alternatives
                        .iter()
                        .map(|(i, a, _)| format!("`{i}` (a `{a}` artifact)"))
                        .collect();
                    write!(
                        f,
                        "stage `{stage}` takes its {group} from one of its inputs {}, but no upstream stage provides any of them",
                        either(&typed)
                    )
                } else {
                    let b: Vec<String> = bound
                        .iter()
                        .map(|(i, s)| format!("`{i}` to `{s}`"))
                        .collect();
                    write!(
                        f,
                        "stage `{stage}` takes its {group} from one input, {}, but {} are bound: {}",
                        either(&names),
                        bound.len(),
                        b.join(", ")
                    )
                }
            }
        }
    }
}

impl SpecIssue {
    /// What is allowed / what to do, with a "did you mean" where one is close.
    pub fn hint(&self) -> Option<String> {
        use super::suggest::nearest;
        let did_you_mean = |word: &str, known: &[String]| {
            nearest(word, known.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default()
        };
        match self {
            SpecIssue::Yaml { .. } => None,
            SpecIssue::UnknownKey { path, allowed } => {
                let last = path.rsplit('.').next().unwrap_or(path);
                Some(format!(
                    "{}allowed here: {}",
                    did_you_mean(last, allowed),
                    list(allowed)
                ))
            }
            SpecIssue::UnknownKind { kind, known, .. } => Some(format!(
                "{}known kinds: {} (see `luna stages`)",
                did_you_mean(kind, known),
                list(known)
            )),
            SpecIssue::MissingNeed { target, known, .. } => {
                outside_family_hint(target).or_else(|| {
                    Some(format!(
                        "{}stages: {}",
                        did_you_mean(target, known),
                        list(known)
                    ))
                })
            }
            SpecIssue::Cycle { .. } => Some("remove one of these `needs:` entries".into()),
            SpecIssue::UnknownParam { path, kind, known } => {
                let last = path.rsplit('.').next().unwrap_or(path);
                Some(format!(
                    "{}parameters of `{kind}`: {} (see `luna stages {kind}`)",
                    did_you_mean(last, known),
                    list(known)
                ))
            }
            SpecIssue::BadParam { .. } => {
                Some("`luna schema` prints the pipeline file format".into())
            }
            SpecIssue::InvalidParam { kind, .. } => Some(format!(
                "`luna stages {kind}` lists its parameters and their types"
            )),
            SpecIssue::UnknownVar { name, .. } if outside_family_hint(name).is_some() => {
                outside_family_hint(name)
            }
            SpecIssue::UnknownVar { name, known, .. }
            | SpecIssue::UnknownSetVar { name, known } => Some(format!(
                "{}declared in `vars:`: {}",
                did_you_mean(name, known),
                list(known)
            )),
            SpecIssue::BadName { .. } => Some(format!(
                "{NAME_RULE} (they become file and environment variable names)"
            )),
            SpecIssue::NameClash { first, .. } => Some(format!(
                "both would be `LUNA_IN_{}` in `command` stages; rename one",
                first.to_ascii_uppercase().replace('-', "_")
            )),
            SpecIssue::NonFinite { .. } => Some(
                "luna takes finite numbers only; leave the parameter out to use its default".into(),
            ),
            SpecIssue::Family { problem, .. } => Some(problem.hint()),
            SpecIssue::Input {
                input,
                artifact,
                problem,
                providers,
                ..
            } => {
                let could = format!("stages that provide a `{artifact}`: {}", list(providers));
                Some(match problem {
                    InputProblem::Missing if providers.is_empty() => {
                        format!("{could}; add a stage that produces one (see `luna stages`)")
                    }
                    InputProblem::Missing => {
                        format!("{could}; add one to `needs:` (and name it with `{input}:` if there are several)")
                    }
                    InputProblem::Ambiguous(_) => {
                        format!("say which one with `with: {{ {input}: <stage> }}`")
                    }
                    InputProblem::NotUpstream(named) => {
                        format!("add `{named}` to `needs:`; {could}")
                    }
                    InputProblem::NoSuchStage(named) => {
                        format!("{}{could}", did_you_mean(named, providers))
                    }
                    InputProblem::WrongKind { .. } => could,
                    InputProblem::Repeated(named) => {
                        format!("list each stage once: `{named}` would count twice")
                    }
                    InputProblem::Unused { lead, .. } => {
                        format!("remove `{input}:` from `with:`, or bind `{lead}` as well")
                    }
                })
            }
            SpecIssue::InputChoice {
                alternatives,
                bound,
                named,
                ..
            } => {
                Some(if bound.is_empty() {
                    let could: Vec<String> = alternatives
                        .iter()
                        .map(|(_, a, p)| format!("a `{a}`: {}", list(p)))
                        .collect();
                    format!(
                        "stages that provide {}; add one to `needs:`",
                        could.join("; ")
                    )
                } else if *named {
                    let keys: Vec<String> = bound.iter().map(|(i, _)| format!("`{i}:`")).collect();
                    format!("keep only one of {} in `with:`", either(&keys))
                } else {
                    let (i, s) = &bound[0];
                    format!("say which one with `with: {{ {i}: {s} }}`, or drop the others from `needs:`")
                })
            }
        }
    }
}

/// A pipeline file that failed to load: the file, its text and every issue found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SpecError {
    /// The pipeline file.
    pub file: PathBuf,
    /// The file's text (for rendering source lines).
    pub text: String,
    /// Issues with their positions.
    pub issues: Vec<(SpecIssue, Option<Pos>)>,
}

impl SpecError {
    /// Renders every issue as `error: … --> file:line:col`, the source line with a caret, and
    /// the hint.
    pub fn render(&self, display_file: &str) -> String {
        let mut out = String::new();
        for (issue, pos) in &self.issues {
            out.push_str(&format!("error: {issue}\n"));
            // rustc layout: the arrow and the hint line up with the `|` gutter
            let mut pad = 2;
            if let Some(p) = pos {
                let gutter = p.line.to_string().len();
                pad = gutter + 1;
                out.push_str(&format!(
                    "{:pad$}--> {display_file}:{}:{}\n",
                    "", p.line, p.col
                ));
                if let Some(line) = self.text.lines().nth(p.line.saturating_sub(1)) {
                    let token_len = token_len(line, p.col);
                    out.push_str(&format!("{:gutter$} |\n", ""));
                    out.push_str(&format!("{} | {line}\n", p.line));
                    out.push_str(&format!(
                        "{:gutter$} | {}{}\n",
                        "",
                        " ".repeat(p.col.saturating_sub(1)),
                        "^".repeat(token_len)
                    ));
                }
            } else {
                out.push_str(&format!("{:pad$}--> {display_file}\n", ""));
            }
            if let Some(h) = issue.hint() {
                out.push_str(&format!("{:pad$}= hint: {h}\n", ""));
            }
        }
        out
    }
}

/// Length of the token starting at 1-based `col`: up to whitespace, a flow delimiter, or the
/// `:` that ends a mapping key (so `lrr: 3` underlines `lrr`, but `12:30` stays whole); a
/// quoted scalar is underlined through its closing quote.
fn token_len(line: &str, col: usize) -> usize {
    let chars: Vec<char> = line.chars().skip(col.saturating_sub(1)).collect();
    if let Some(&q) = chars.first().filter(|c| **c == '"' || **c == '\'') {
        // a quoted scalar: underline through the closing quote
        if let Some(end) = chars.iter().skip(1).position(|&c| c == q) {
            return end + 2;
        }
    }
    let mut n = 0;
    while n < chars.len() {
        let c = chars[n];
        let key_end = c == ':' && chars.get(n + 1).is_none_or(|d| d.is_whitespace());
        if c.is_whitespace() || c == ',' || c == ']' || c == '}' || key_end {
            break;
        }
        n += 1;
    }
    n.max(1)
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.render(&self.file.display().to_string()))
    }
}

/// Errors finding or reading a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No workspace (a directory with `pipelines/`) above the current directory.
    #[error("no luna workspace here: no `pipelines/` directory in {start} or any parent")]
    NoWorkspace {
        /// Where the search started.
        start: PathBuf,
    },
    /// No such pipeline.
    #[error("no pipeline `{name}` in {dir}")]
    NoPipeline {
        /// Name asked for.
        name: String,
        /// The pipelines directory.
        dir: PathBuf,
        /// Pipelines that exist.
        known: Vec<String>,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is invalid.
    #[error("{0}")]
    Spec(#[from] SpecError),
    /// A `--set` argument is not `name=value`.
    #[error("--set {arg}: expected name=value")]
    BadSet {
        /// The argument.
        arg: String,
    },
}

impl LoadError {
    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            LoadError::NoWorkspace { .. } => {
                Some("run luna inside a project with a pipelines/ directory, or pass a path to a .yaml file".into())
            }
            LoadError::NoPipeline { name, known, .. } => {
                let dym = super::suggest::nearest(name, known.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                Some(format!("{dym}pipelines: {}", list(known)))
            }
            LoadError::Io { .. } => None,
            LoadError::Spec(_) => None,
            LoadError::BadSet { .. } => Some("e.g. --set luna_root=/data/luna".into()),
        }
    }
}
