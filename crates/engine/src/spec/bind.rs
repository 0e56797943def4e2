//! Binding named inputs ([`InputSlot`]s) to upstream stages at plan time, and reporting what
//! cannot be bound at the naming value (or at the stage's `needs:` / `uses:`).
//!
//! Rules (the [`InputSlot`] doc states them for users): a slot named in `with:` takes that
//! stage, which must exist, provide the slot's artifact type and be upstream; an unnamed slot
//! takes the one direct `needs:` entry that provides its type, else the one ancestor. An
//! either-or group is bound as one slot taking any of its alternatives' types (so exactly one
//! alternative binds, and the direct needs still win over ancestors); a slot `only_with` a lead
//! is bound after the others, only when its lead is. A listed slot named by a list binds every
//! member in order (each checked at its own position in the list, a repeat refused) under
//! `member_binding`'s names. Rejected: binding every alternative that
//! can be bound and letting the stage choose at run time — a pipeline with both sources would
//! run, and which one was scored would depend on code, not on the file.

use std::collections::BTreeMap;

use super::super::dag::Dag;
use super::super::kind::{member_binding, InputSlot};
use super::super::spec_error::{InputProblem, SpecIssue};
use super::parse::Parse;
use super::{Issues, StageSpec};

/// Pass: binds the inputs once the graph is known and every stage checked (a missing stage
/// would make every binding to it look wrong).
pub(super) fn pass(st: &mut Parse<'_>) {
    if let Some(dag) = &st.dag {
        if st.stages.len() == st.stage_names.len() {
            bind_inputs(&mut st.stages, dag, &st.families, &mut st.is);
        }
    }
}

/// Binds every stage's input slots, filling `StageSpec::bindings`.
fn bind_inputs(
    stages: &mut [StageSpec],
    dag: &Dag,
    families: &BTreeMap<String, Vec<String>>,
    is: &mut Issues,
) {
    let all: Vec<BTreeMap<String, String>> = (0..stages.len())
        .map(|i| Binder::new(stages, dag, families, i).bind_all(is))
        .collect();
    for (st, b) in stages.iter_mut().zip(all) {
        st.bindings = b;
    }
}

/// What binding one stage's inputs needs to know about the pipeline.
struct Binder<'a> {
    stages: &'a [StageSpec],
    /// Each family's members, for a listed slot named by a family.
    families: &'a BTreeMap<String, Vec<String>>,
    /// The stage being bound.
    i: usize,
    /// Its direct `needs:`.
    direct: Vec<usize>,
    /// Its ancestors (without itself).
    ancestors: Vec<usize>,
    /// `stages.<name>`.
    base: String,
    /// Where an unnamed input's problem is reported: `needs:`, or `uses:` without needs.
    at: String,
}

impl<'a> Binder<'a> {
    fn new(
        stages: &'a [StageSpec],
        dag: &Dag,
        families: &'a BTreeMap<String, Vec<String>>,
        i: usize,
    ) -> Self {
        let base = format!("stages.{}", stages[i].name);
        let at = if dag.deps(i).is_empty() {
            format!("{base}.uses")
        } else {
            format!("{base}.needs")
        };
        Binder {
            stages,
            families,
            i,
            direct: dag.deps(i).to_vec(),
            ancestors: dag
                .ancestors_inclusive(i)
                .into_iter()
                .filter(|&j| j != i)
                .collect(),
            base,
            at,
        }
    }

    fn provides(&self, j: usize, artifact: &str) -> bool {
        self.stages[j].params.outputs.iter().any(|o| o == artifact)
    }

    /// Every other stage of the pipeline that provides `artifact` (for hints).
    fn providers(&self, artifact: &str) -> Vec<String> {
        (0..self.stages.len())
            .filter(|&j| j != self.i && self.provides(j, artifact))
            .map(|j| self.stages[j].name.clone())
            .collect()
    }

    fn issue(&self, slot: &InputSlot, problem: InputProblem) -> SpecIssue {
        SpecIssue::Input {
            stage: self.stages[self.i].name.clone(),
            input: slot.name.into(),
            artifact: slot.artifact.into(),
            problem,
            providers: self.providers(slot.artifact),
        }
    }

    fn named_at(&self, slot: &InputSlot) -> String {
        format!("{}.with.{}", self.base, slot.name)
    }

    /// Every stage named for `slot`, in order, if all of them can fill it (else each problem is
    /// reported at its own value: the list item's position for a list).
    fn check_named(&self, slot: &InputSlot, is: &mut Issues) -> Option<Vec<String>> {
        let written = slot.named_all();
        let family = match written.as_slice() {
            [one] if slot.listed => self.families.get(one),
            _ => None,
        };
        let names = family.cloned().unwrap_or(written);
        // a family's members are reported at the family's name
        let listed = names.len() > 1 && family.is_none();
        let mut ok = true;
        for (i, named) in names.iter().enumerate() {
            let path = match listed {
                true => format!("{}.{i}", self.named_at(slot)),
                false => self.named_at(slot),
            };
            if names[..i].contains(named) {
                let problem = InputProblem::Repeated(named.clone());
                is.at_value(&path, self.issue(slot, problem));
                ok = false;
            } else {
                ok &= self.check_one(slot, named, &path, is);
            }
        }
        ok.then_some(names)
    }

    /// Whether the stage `named` can fill `slot` (else the problem is reported at `path`).
    fn check_one(&self, slot: &InputSlot, named: &str, path: &str, is: &mut Issues) -> bool {
        let problem = match self.stages.iter().position(|s| s.name == named) {
            None => InputProblem::NoSuchStage(named.into()),
            Some(j) if !self.provides(j, slot.artifact) => InputProblem::WrongKind {
                named: named.into(),
                kind: self.stages[j].kind.name().into(),
                produces: self.stages[j].params.outputs.clone(),
            },
            Some(j) if !self.ancestors.contains(&j) => InputProblem::NotUpstream(named.into()),
            Some(_) => return true,
        };
        is.at_value(path, self.issue(slot, problem));
        false
    }

    /// The upstreams that could fill any of `slots`, from the direct needs if any there can,
    /// else from the ancestors: (slot, stage index) pairs.
    fn found<'s>(&self, slots: &[&'s InputSlot]) -> Vec<(&'s InputSlot, usize)> {
        for set in [&self.direct, &self.ancestors] {
            let hits: Vec<(&InputSlot, usize)> = slots
                .iter()
                .flat_map(|s| {
                    set.iter()
                        .filter(|&&j| self.provides(j, s.artifact))
                        .map(move |&j| (*s, j))
                })
                .collect();
            if !hits.is_empty() {
                return hits;
            }
        }
        Vec::new()
    }

    /// Binds one ordinary slot: its stage names (one unless a list is named), or `None`
    /// (unbound optional, or reported).
    fn bind_one(&self, slot: &InputSlot, is: &mut Issues) -> Option<Vec<String>> {
        if slot.named.is_some() {
            return self.check_named(slot, is);
        }
        match self.found(&[slot]).as_slice() {
            [(_, j)] => Some(vec![self.stages[*j].name.clone()]),
            [] if !slot.required => None,
            [] => {
                is.at_value(&self.at, self.issue(slot, InputProblem::Missing));
                None
            }
            many => {
                let names = many.iter().map(|(_, j)| self.stages[*j].name.clone());
                let problem = InputProblem::Ambiguous(names.collect());
                is.at_value(&self.at, self.issue(slot, problem));
                None
            }
        }
    }

    /// Binds an either-or group: the one alternative named, or the one found upstream.
    fn bind_group(
        &self,
        group: &str,
        alts: &[&InputSlot],
        is: &mut Issues,
    ) -> Option<(&'static str, Vec<String>)> {
        let named: Vec<(&InputSlot, &String)> = alts
            .iter()
            .filter_map(|s| s.named.as_ref().map(|n| (*s, n)))
            .collect();
        let choice = |bound: Vec<(String, String)>, named: bool| SpecIssue::InputChoice {
            stage: self.stages[self.i].name.clone(),
            group: group.into(),
            alternatives: alts
                .iter()
                .map(|s| (s.name.into(), s.artifact.into(), self.providers(s.artifact)))
                .collect(),
            bound,
            named,
        };
        match named.as_slice() {
            [(slot, _)] => return self.check_named(slot, is).map(|st| (slot.name, st)),
            [_, (second, _), ..] => {
                let bound = named.iter().map(|(s, n)| (s.name.into(), (*n).clone()));
                is.at_value(&self.named_at(second), choice(bound.collect(), true));
                return None;
            }
            [] => {}
        }
        let hits = self.found(alts);
        let mut slots: Vec<&str> = hits.iter().map(|(s, _)| s.name).collect();
        slots.dedup();
        match (slots.len(), hits.as_slice()) {
            (_, [(slot, j)]) => Some((slot.name, vec![self.stages[*j].name.clone()])),
            (0, _) => {
                is.at_value(&self.at, choice(Vec::new(), false));
                None
            }
            (1, many) => {
                let names = many.iter().map(|(_, j)| self.stages[*j].name.clone());
                let problem = InputProblem::Ambiguous(names.collect());
                is.at_value(&self.at, self.issue(many[0].0, problem));
                None
            }
            (_, many) => {
                let bound = many
                    .iter()
                    .map(|(s, j)| (s.name.to_string(), self.stages[*j].name.clone()));
                is.at_value(&self.at, choice(bound.collect(), false));
                None
            }
        }
    }

    /// Binds ordinary slots and groups in slot order, then the `only_with` slots.
    fn bind_all(&self, is: &mut Issues) -> BTreeMap<String, String> {
        let slots = &self.stages[self.i].params.slots;
        let mut bound = BTreeMap::new();
        let mut groups_done: Vec<&str> = Vec::new();
        for slot in slots.iter().filter(|s| s.only_with.is_none()) {
            let Some(group) = slot.alternative else {
                if let Some(st) = self.bind_one(slot, is) {
                    insert(&mut bound, slot.name, st);
                }
                continue;
            };
            if groups_done.contains(&group) {
                continue;
            }
            groups_done.push(group);
            let alts: Vec<&InputSlot> = slots
                .iter()
                .filter(|s| s.alternative == Some(group))
                .collect();
            if let Some((name, st)) = self.bind_group(group, &alts, is) {
                insert(&mut bound, name, st);
            }
        }
        for slot in slots.iter() {
            let Some(lead) = slot.only_with else {
                continue;
            };
            // a lead named but refused is reported already: its follower is not "unused"
            let lead_named = slots.iter().any(|s| s.name == lead && s.named.is_some());
            if bound.contains_key(lead) {
                if let Some(st) = self.bind_one(slot, is) {
                    insert(&mut bound, slot.name, st);
                }
            } else if let (Some(named), false) = (&slot.named, lead_named) {
                let problem = InputProblem::Unused {
                    named: named.clone(),
                    lead: lead.into(),
                };
                is.at_value(&self.named_at(slot), self.issue(slot, problem));
            }
        }
        bound
    }
}

/// Records the stages bound to `slot`, in order, under [`member_binding`]'s names.
fn insert(bound: &mut BTreeMap<String, String>, slot: &str, stages: Vec<String>) {
    for (i, st) in stages.into_iter().enumerate() {
        bound.insert(member_binding(slot, i), st);
    }
}
