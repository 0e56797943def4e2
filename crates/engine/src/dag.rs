//! The stage graph: validation (missing targets, cycles), topological order and the
//! `--until` / `--only` / `--force` selections.

use std::collections::BTreeSet;

/// A DAG of stages, indexed in pipeline-file order.
#[derive(Debug, Clone)]
pub struct Dag {
    names: Vec<String>,
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
}

impl Dag {
    /// Builds the graph; `needs` entries must name stages in `names` (checked by the spec).
    /// Returns the first cycle found (as a closed path of names) if there is one.
    pub fn new(stages: &[(String, Vec<String>)]) -> Result<Dag, Vec<String>> {
        let names: Vec<String> = stages.iter().map(|(n, _)| n.clone()).collect();
        let idx = |n: &str| names.iter().position(|m| m == n);
        let deps: Vec<Vec<usize>> = stages
            .iter()
            .map(|(_, needs)| needs.iter().filter_map(|n| idx(n)).collect())
            .collect();
        let mut dependents = vec![Vec::new(); names.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let dag = Dag {
            names,
            deps,
            dependents,
        };
        match dag.find_cycle() {
            Some(c) => Err(c),
            None => Ok(dag),
        }
    }

    fn find_cycle(&self) -> Option<Vec<String>> {
        // 0 = unvisited, 1 = on stack, 2 = done
        let mut state = vec![0u8; self.names.len()];
        let mut stack: Vec<usize> = Vec::new();
        fn visit(
            d: &Dag,
            i: usize,
            state: &mut [u8],
            stack: &mut Vec<usize>,
        ) -> Option<Vec<String>> {
            state[i] = 1;
            stack.push(i);
            for &j in &d.deps[i] {
                if state[j] == 1 {
                    let start = stack.iter().position(|&s| s == j).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|&s| d.names[s].clone()).collect();
                    cycle.push(d.names[j].clone());
                    return Some(cycle);
                }
                if state[j] == 0 {
                    if let Some(c) = visit(d, j, state, stack) {
                        return Some(c);
                    }
                }
            }
            stack.pop();
            state[i] = 2;
            None
        }
        (0..self.names.len()).find_map(|i| {
            if state[i] == 0 {
                visit(self, i, &mut state, &mut stack)
            } else {
                None
            }
        })
    }

    /// Number of stages.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no stages.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Stage name by index.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Index of a stage by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Direct upstream stages of `i`.
    pub fn deps(&self, i: usize) -> &[usize] {
        &self.deps[i]
    }

    /// Direct downstream stages of `i`.
    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }

    /// A topological order, stable with respect to file order.
    pub fn topo_order(&self) -> Vec<usize> {
        let mut done = vec![false; self.len()];
        let mut out = Vec::with_capacity(self.len());
        while out.len() < self.len() {
            let before = out.len();
            for i in 0..self.len() {
                if !done[i] && self.deps[i].iter().all(|&d| done[d]) {
                    done[i] = true;
                    out.push(i);
                }
            }
            if out.len() == before {
                break; // unreachable: cycles are rejected in new()
            }
        }
        out
    }

    /// `i` and everything it depends on, transitively.
    pub fn ancestors_inclusive(&self, i: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![i];
        while let Some(x) = todo.pop() {
            if seen.insert(x) {
                todo.extend(&self.deps[x]);
            }
        }
        seen
    }

    /// `i` and everything that depends on it, transitively.
    pub fn descendants_inclusive(&self, i: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![i];
        while let Some(x) = todo.pop() {
            if seen.insert(x) {
                todo.extend(&self.dependents[x]);
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, needs: &[&str]) -> (String, Vec<String>) {
        (name.into(), needs.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn reports_the_cycle_as_a_closed_path() {
        let err = Dag::new(&[s("a", &["c"]), s("b", &["a"]), s("c", &["b"])]).unwrap_err();
        assert_eq!(err, vec!["a", "c", "b", "a"]);
    }

    #[test]
    fn topo_order_and_selections() {
        let d = Dag::new(&[
            s("c", &["a", "b"]),
            s("a", &[]),
            s("b", &["a"]),
            s("x", &[]),
        ])
        .unwrap();
        let order: Vec<&str> = d.topo_order().iter().map(|&i| d.name(i)).collect();
        assert_eq!(order, vec!["a", "b", "x", "c"]);
        let anc: Vec<&str> = d
            .ancestors_inclusive(2)
            .iter()
            .map(|&i| d.name(i))
            .collect();
        assert_eq!(anc, vec!["a", "b"]);
        let desc: Vec<&str> = d
            .descendants_inclusive(1)
            .iter()
            .map(|&i| d.name(i))
            .collect();
        assert_eq!(desc, vec!["c", "a", "b"]);
    }
}
