//! The stage contract: what a stage kind is, how its parameters are checked, and what it gets
//! when it runs.
//!
//! A kind is one Rust type implementing [`Stage`]: a typed `Params` (serde with
//! `deny_unknown_fields`, JSON-Schema derivable), a `VERSION` bumped whenever its output would
//! change for the same inputs, the external files it reads, the artifact types it provides
//! (`OUTPUTS`), the upstream artifacts it reads by name ([`InputSlot`]s, bound at plan time by
//! `spec.rs`), and `run`. The executor only sees the object-safe [`DynKind`], which [`Typed`]
//! derives from a [`Stage`].
//!
//! Parameters are of two sorts, and the split is visible in the type:
//! - **semantic** fields change the result and go into the cache key;
//! - [`Hint`] fields (`device`, thread counts) and [`InputPath`] fields (where an external file
//!   lives on this machine) serialize as `null` and are dropped from the key. An input path's
//!   *content* enters the key through [`Stage::inputs`], so a teammate with the same data under
//!   another directory gets cache hits.

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

use super::context::StageContext;
use super::error::StageError;

/// A parameter that changes how a stage runs but never what it produces (device, threads).
/// Serialized as `null`, so it never enters a cache key.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Hint<T>(pub T);

impl<T> Serialize for Hint<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

impl<T> std::ops::Deref for Hint<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A path to an external file or directory. Its location is not part of the cache key (it is
/// machine-specific); its content is, via [`Stage::inputs`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct InputPath(pub PathBuf);

impl Serialize for InputPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

impl InputPath {
    /// The path as written in the pipeline (relative paths are relative to the workspace).
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl fmt::Display for InputPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// An external file or directory a stage reads, fingerprinted by content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalInput {
    /// Label shown in reasons, e.g. the parameter name `annotations`.
    pub name: String,
    /// Path as given (relative to the workspace root unless absolute).
    pub path: PathBuf,
    /// Whether a missing path is allowed (fingerprinted as "absent").
    pub optional: bool,
    /// Fingerprint only the directory's file names and sizes, not contents (for stages that
    /// only list a tree, e.g. "which CTs are on disk").
    pub listing: bool,
    /// Key only the items the stage reads below this directory ([`Stage::reads`]), not the
    /// whole tree; `None`: the whole tree.
    pub narrowed: Option<Narrowed>,
}

/// How a directory input is narrowed to what the stage reads (see `fingerprint.rs`, "Keys from
/// what a stage reads").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Narrowed {
    /// The input slot whose artifact says which items are read (e.g. `candidates`: the series
    /// of its table); `None`: the stage's parameters alone decide.
    pub by: Option<&'static str>,
}

/// Where a narrowed input is read ([`Stage::reads`]): the input's name, its directory, and the
/// directory of the artifact bound to the slot that decides (`None` when none decides or the
/// slot is unbound).
#[derive(Debug, Clone, Copy)]
pub struct ReadsAt<'a> {
    /// The input's name (e.g. `ct_root`).
    pub input: &'a str,
    /// Its directory, resolved.
    pub root: &'a Path,
    /// The deciding artifact's directory.
    pub by: Option<&'a Path>,
}

/// One item a stage reads below a narrowed input: its name (e.g. a series uid) and its files,
/// in the order their hashes enter the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadItem {
    /// The item's name (part of the key).
    pub item: String,
    /// Its files (their content, not their paths, is part of the key).
    pub files: Vec<PathBuf>,
}

impl ExternalInput {
    /// A required input.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        ExternalInput {
            name: name.into(),
            path: path.into(),
            optional: false,
            listing: false,
            narrowed: None,
        }
    }
    /// This input keyed only by the items the stage reads below it ([`Stage::reads`]), as
    /// decided by the artifact of input slot `by` (or the parameters alone, `None`).
    pub fn narrowed_by(self, by: Option<&'static str>) -> Self {
        ExternalInput {
            narrowed: Some(Narrowed { by }),
            ..self
        }
    }
    /// A directory whose listing (relative paths and sizes), not content, is the input.
    pub fn listing(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        ExternalInput {
            name: name.into(),
            path: path.into(),
            optional: false,
            listing: true,
            narrowed: None,
        }
    }
    /// An input that may be absent.
    pub fn optional(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        ExternalInput {
            name: name.into(),
            path: path.into(),
            optional: true,
            listing: false,
            narrowed: None,
        }
    }
}

/// A named input of a stage: an upstream artifact of a declared type.
///
/// The user may name the upstream stage in `with:` under the input's name (`model:
/// train_nodule`); otherwise the one direct `needs:` entry that produces the artifact type is
/// taken (or, with none among the direct needs, the one ancestor that does). Binding happens
/// at plan time: a missing, ambiguous or wrong-kind upstream is a spec error with its
/// position and the list of stages that could provide the input.
///
/// Either-or inputs: the slots made with [`InputSlot::alternative`] under one group name are
/// bound as if they were one input taking any of their artifact types (a named one wins; else
/// the direct `needs:`, else the ancestors), so exactly one of them is bound; none or several
/// is a spec error. A slot made [`InputSlot::only_with`] another is bound only when that one
/// is (e.g. the candidate table that goes with a predictions table), so an ancestor providing
/// it never binds it on the other branch. Rejected: alternatives decided by parameters in
/// [`Stage::slots`], which cannot see the graph and would make every user name the source.
///
/// Lists: a slot made [`InputSlot::listed`] (its parameter a [`StageRefs`]) may be named by a
/// list of stages (`predictions: [fold_0, fold_1]`, pooled folds). Every member is checked
/// like a single name (at its own position) and bound in order under [`member_binding`]'s
/// names, so the stage key holds every member's key in order; a list of one binds exactly
/// like the stage itself. A family's name (`predictions: evaluate`, a `foreach` family) names
/// its members in order. An unnamed listed slot binds one stage, as any slot does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSlot {
    /// Input name; also the `with:` key that names its upstream.
    pub name: &'static str,
    /// The artifact type it takes (one of some kind's [`Stage::OUTPUTS`]).
    pub artifact: &'static str,
    /// The upstream stage named in `with:`, if any (the first one of a list).
    pub named: Option<String>,
    /// The further stages of a list named in `with:` ([`InputSlot::listed`]); else empty.
    pub named_more: Vec<String>,
    /// Whether it takes a list ([`InputSlot::listed`]); a family's name then names its members.
    pub listed: bool,
    /// Whether the stage cannot run without it.
    pub required: bool,
    /// The either-or group this slot is one alternative of (what the group supplies, e.g.
    /// `marks`).
    pub alternative: Option<&'static str>,
    /// The slot this one is bound with: bound only when that one is.
    pub only_with: Option<&'static str>,
}

impl InputSlot {
    /// A required input, bound by the `with:` value `named` or else by artifact type.
    pub fn required(name: &'static str, artifact: &'static str, named: Option<&StageRef>) -> Self {
        InputSlot {
            name,
            artifact,
            named: named.map(|s| s.0.clone()),
            named_more: Vec::new(),
            listed: false,
            required: true,
            alternative: None,
            only_with: None,
        }
    }
    /// One alternative of the either-or input `group`: exactly one of the group's slots binds.
    pub fn alternative(
        group: &'static str,
        name: &'static str,
        artifact: &'static str,
        named: Option<&StageRef>,
    ) -> Self {
        InputSlot {
            alternative: Some(group),
            ..InputSlot::required(name, artifact, named)
        }
    }
    /// This input, bound (and then required) only when the slot `lead` is bound.
    pub fn only_with(self, lead: &'static str) -> Self {
        InputSlot {
            only_with: Some(lead),
            ..self
        }
    }
    /// This input, named by one stage or by a list of them (`named` replaces the single name
    /// the constructor took).
    pub fn listed(self, named: Option<&StageRefs>) -> Self {
        let mut names = named.map(StageRefs::names).unwrap_or_default().into_iter();
        InputSlot {
            named: names.next(),
            named_more: names.collect(),
            listed: true,
            ..self
        }
    }
    /// Every stage named for this input in `with:`, in order (empty when none is).
    pub fn named_all(&self) -> Vec<String> {
        self.named.iter().chain(&self.named_more).cloned().collect()
    }
    /// An input used when present (e.g. a dataset that an explicit path parameter replaces).
    pub fn optional(name: &'static str, artifact: &'static str, named: Option<&StageRef>) -> Self {
        InputSlot {
            required: false,
            ..InputSlot::required(name, artifact, named)
        }
    }
}

/// A parameter that names an upstream stage (`model: train_nodule`). Serialized as `null`:
/// which artifact fills an input enters the key through the bindings (upstream keys), not
/// through the stage's name, so renaming a stage keeps its consumers' keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct StageRef(pub String);

impl Serialize for StageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

/// The binding name of member `i` of a listed input `slot` ([`InputSlot::listed`]): `slot`
/// for the first, so a list of one binds like the stage itself, and `slot[i]` for the others.
pub fn member_binding(slot: &str, i: usize) -> String {
    if i == 0 {
        slot.to_string()
    } else {
        format!("{slot}[{i}]")
    }
}

/// The parameter of a listed input ([`InputSlot::listed`]): one upstream stage
/// (`predictions: eval`) or a non-empty list of them (`predictions: [eval_0, eval_1]`).
/// Serialized as `null`, like [`StageRef`]: the members enter the key through the bindings.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum StageRefs {
    /// One stage.
    One(StageRef),
    /// Several stages, in the order given (never empty).
    Many(Vec<StageRef>),
}

impl Serialize for StageRefs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

impl<'de> Deserialize<'de> for StageRefs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a stage name or a list of stage names")
        })? {
            Raw::One(s) => Ok(StageRefs::One(StageRef(s))),
            Raw::Many(v) if v.is_empty() => Err(serde::de::Error::custom(
                "an empty list names no stage: name at least one, or leave the input out",
            )),
            Raw::Many(v) => Ok(StageRefs::Many(v.into_iter().map(StageRef).collect())),
        }
    }
}

impl StageRefs {
    /// The stage names, in order.
    pub fn names(&self) -> Vec<String> {
        match self {
            StageRefs::One(s) => vec![s.0.clone()],
            StageRefs::Many(v) => v.iter().map(|s| s.0.clone()).collect(),
        }
    }
    /// How many stages are named.
    pub fn len(&self) -> usize {
        match self {
            StageRefs::One(_) => 1,
            StageRefs::Many(v) => v.len(),
        }
    }
    /// Never true (an empty list does not deserialize); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A typed stage kind.
pub trait Stage: Send + Sync + 'static {
    /// The parameters under `with:`.
    type Params: DeserializeOwned + Serialize + JsonSchema + Send + Sync + 'static;
    /// The name used in `uses:`.
    const KIND: &'static str;
    /// Bumped whenever the output changes for the same inputs and parameters.
    const VERSION: u32;
    /// One line describing the kind (shown by `luna stages`).
    const DOC: &'static str;

    /// The artifact types this kind's output provides to named inputs downstream
    /// (e.g. `crops`, `model`).
    const OUTPUTS: &'static [&'static str] = &[];

    /// Whether the stage computes per-item partitions ([`StageContext::partition`]), which an
    /// executor backend may spread over several processes (a Slurm job array) before the
    /// stage itself runs over the cached partitions.
    const PARTITIONED: bool = false;

    /// External files and directories read by this stage (their content enters the key).
    fn inputs(_params: &Self::Params) -> Vec<ExternalInput> {
        Vec::new()
    }

    /// The items a stage reads below a narrowed external input (see
    /// [`ExternalInput::narrowed_by`]), `at` its directory given the deciding artifact. Called
    /// at plan time, and again once that artifact exists. An error keys the whole tree instead
    /// (the stage then runs and reports the problem itself).
    fn reads(_params: &Self::Params, at: ReadsAt<'_>) -> Result<Vec<ReadItem>, StageError> {
        Err(StageError::msg(format!(
            "the kind narrows its input `{}` but says nothing about what it reads",
            at.input
        )))
    }

    /// Artifact types a stage provides beyond [`Stage::OUTPUTS`], from its parameters (a
    /// `command` stage's `provides:`).
    fn provides(_params: &Self::Params) -> Vec<String> {
        Vec::new()
    }

    /// The upstream artifacts this stage reads, by name (see [`InputSlot`]).
    fn slots(_params: &Self::Params) -> Vec<InputSlot> {
        Vec::new()
    }

    /// The semantic parameters that partition keys start from (default: all of them). A kind
    /// whose parameter only selects *which* items run (e.g. `segment`'s `series`) removes it,
    /// so changing the selection reuses the partitions already computed.
    fn partition_params(_params: &Self::Params, semantic: &serde_json::Value) -> serde_json::Value {
        semantic.clone()
    }

    /// Extra checks on parameters beyond their types (ranges, combinations).
    fn validate(_params: &Self::Params) -> Result<(), ParamError> {
        Ok(())
    }

    /// Runs the stage, writing its outputs under `ctx.out_dir()`.
    fn run(&self, params: &Self::Params, ctx: &mut StageContext) -> Result<(), StageError>;
}

/// Parameters after checking: the typed value plus its key-relevant JSON.
#[derive(Clone)]
pub struct CheckedParams {
    /// Canonical JSON of the semantic parameters (hints and paths removed).
    pub semantic: serde_json::Value,
    /// External inputs declared by the parameters.
    pub inputs: Vec<ExternalInput>,
    /// Named upstream inputs declared by the parameters.
    pub slots: Vec<InputSlot>,
    /// Artifact types this stage's output provides ([`Stage::OUTPUTS`] + [`Stage::provides`]).
    pub outputs: Vec<String>,
    /// The parameters partition keys start from ([`Stage::partition_params`]).
    pub partition: serde_json::Value,
    /// The typed parameters, for the kind's own `run`.
    pub typed: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for CheckedParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedParams")
            .field("semantic", &self.semantic)
            .field("inputs", &self.inputs)
            .field("slots", &self.slots)
            .finish()
    }
}

/// A parameter problem found while checking `with:`.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamProblem {
    /// A key the kind does not know.
    Unknown {
        /// Path under `with`, e.g. `lrr`.
        path: String,
        /// Keys the kind accepts at that level.
        known: Vec<String>,
    },
    /// A value of the wrong type or an invalid value.
    Invalid {
        /// Path under `with`, e.g. `lr` (empty for `with` itself).
        path: String,
        /// What was expected, in serde's words.
        message: String,
    },
}

/// A parameter value its type accepts but the kind's own check ([`Stage::validate`]) refuses:
/// which parameter, and why. The spec reports it as [`ParamProblem::Invalid`] at the
/// parameter's position, with `message` as written here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// Path under `with`, e.g. `optimizer.lr` (empty for the parameters as a whole).
    pub path: String,
    /// What is wrong, in the words shown to the user.
    pub message: String,
}

impl ParamError {
    /// The parameter at `path` (under `with`, dotted) is refused for `message`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ParamError {
            path: path.into(),
            message: message.into(),
        }
    }
    /// The parameters as a whole are refused (a combination, not one value).
    pub fn whole(message: impl Into<String>) -> Self {
        ParamError::new(String::new(), message)
    }
}

impl From<ParamError> for ParamProblem {
    fn from(e: ParamError) -> Self {
        ParamProblem::Invalid {
            path: e.path,
            message: e.message,
        }
    }
}

/// The object-safe form of a kind, used by the registry and executor.
pub trait DynKind: Send + Sync {
    /// Name used in `uses:`.
    fn name(&self) -> &'static str;
    /// Kind version.
    fn version(&self) -> u32;
    /// One-line doc.
    fn doc(&self) -> &'static str;
    /// Artifact types its output provides.
    fn outputs(&self) -> &'static [&'static str];
    /// Whether it computes per-item partitions ([`Stage::PARTITIONED`]).
    fn partitioned(&self) -> bool;
    /// JSON schema of `with:`.
    fn schema(&self) -> schemars::Schema;
    /// Checks `with:` (as JSON) and returns typed + canonical parameters.
    fn check(&self, with: &serde_json::Value) -> Result<CheckedParams, ParamProblem>;
    /// Runs the stage with parameters previously returned by `check`.
    fn run(&self, params: &CheckedParams, ctx: &mut StageContext) -> Result<(), StageError>;
    /// [`Stage::reads`] with parameters previously returned by `check`.
    fn reads(&self, params: &CheckedParams, at: ReadsAt<'_>) -> Result<Vec<ReadItem>, StageError>;
}

/// Adapter from a typed [`Stage`] to [`DynKind`].
pub struct Typed<S: Stage>(pub S);

impl<S: Stage> DynKind for Typed<S> {
    fn name(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn doc(&self) -> &'static str {
        S::DOC
    }
    fn outputs(&self) -> &'static [&'static str] {
        S::OUTPUTS
    }
    fn partitioned(&self) -> bool {
        S::PARTITIONED
    }
    fn schema(&self) -> schemars::Schema {
        schemars::schema_for!(S::Params)
    }
    fn check(&self, with: &serde_json::Value) -> Result<CheckedParams, ParamProblem> {
        let schema = serde_json::to_value(self.schema()).unwrap_or_default();
        check_unknown_keys(&schema, &schema, with, "")?;
        let typed: S::Params = serde_path_to_error::deserialize(with.clone()).map_err(|e| {
            let path = e.path().to_string();
            ParamProblem::Invalid {
                path: if path == "." { String::new() } else { path },
                message: e.into_inner().to_string(),
            }
        })?;
        S::validate(&typed)?;
        let semantic = serde_json::to_value(&typed)
            .map(|v| super::fingerprint::canonical_json(&v))
            .map_err(|e| ParamProblem::Invalid {
                path: String::new(),
                message: e.to_string(),
            })?;
        let partition = S::partition_params(&typed, &semantic);
        Ok(CheckedParams {
            partition,
            semantic,
            inputs: S::inputs(&typed),
            slots: S::slots(&typed),
            outputs: S::OUTPUTS
                .iter()
                .map(|s| s.to_string())
                .chain(S::provides(&typed))
                .collect(),
            typed: Arc::new(typed),
        })
    }
    fn run(&self, params: &CheckedParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let typed = params
            .typed
            .downcast_ref::<S::Params>()
            .expect("CheckedParams passed to run() came from this kind's check()");
        self.0.run(typed, ctx)
    }
    fn reads(&self, params: &CheckedParams, at: ReadsAt<'_>) -> Result<Vec<ReadItem>, StageError> {
        let typed = params
            .typed
            .downcast_ref::<S::Params>()
            .expect("CheckedParams passed to reads() came from this kind's check()");
        S::reads(typed, at)
    }
}

/// Finds keys in `value` that the schema's `properties` do not list (recursing into nested
/// objects whose schema is known), so unknown parameters are reported with their full path
/// and the list of known keys rather than serde's message without a location.
fn check_unknown_keys(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    path: &str,
) -> Result<(), ParamProblem> {
    let schema = resolve_ref(root, schema);
    let (Some(obj), Some(props)) = (
        value.as_object(),
        schema.get("properties").and_then(|p| p.as_object()),
    ) else {
        return Ok(());
    };
    for (k, v) in obj {
        let sub = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match props.get(k) {
            Some(s) => check_unknown_keys(root, s, v, &sub)?,
            None => {
                if schema.get("additionalProperties") == Some(&serde_json::Value::Bool(false)) {
                    return Err(ParamProblem::Unknown {
                        path: sub,
                        known: props.keys().cloned().collect(),
                    });
                }
            }
        }
    }
    Ok(())
}

fn resolve_ref<'a>(
    root: &'a serde_json::Value,
    schema: &'a serde_json::Value,
) -> &'a serde_json::Value {
    if let Some(r) = schema.get("$ref").and_then(|r| r.as_str()) {
        if let Some(name) = r.strip_prefix("#/$defs/") {
            if let Some(s) = root.get("$defs").and_then(|d| d.get(name)) {
                return s;
            }
        }
    }
    // `Option<T>` and friends appear as anyOf [T, null]: look through to the object schema.
    if let Some(any) = schema.get("anyOf").and_then(|a| a.as_array()) {
        for s in any {
            let s = resolve_ref(root, s);
            if s.get("properties").is_some() {
                return s;
            }
        }
    }
    schema
}
