//! Which cache imports each function of a module can reach, in time linear in the
//! module's call graph.
//!
//! The analysis numbers the module's `linkcache:fn` and `linkcache:global` imports as
//! bits (a "dependency set" is a bitset over them), builds one graph whose nodes are the
//! module's functions plus two stand-ins (one for "any function a table or `ref.func`
//! names", one for "instantiation"), and computes every node's set once: petgraph's
//! Kosaraju (iterative, so no recursion whose depth follows the input) gives the
//! strongly connected components sinks first, and each component's set is its own
//! bits or-ed with its successors' sets. A component that adds nothing to its one
//! successor shares that successor's set instead of copying it, so long call chains
//! cost no memory per link.
//!
//! The work is bounded by [`ReachBudget`]: a module whose sets would need more words
//! than the budget allows is rejected with a clear error instead of exhausting memory.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;

use petgraph::Graph;
use petgraph::graph::NodeIndex;

/// A set of dependency bits; `None` is the empty set.
pub(crate) type Bits = Option<Rc<[u64]>>;

/// How many 64-bit words of dependency sets an analysis may allocate.
pub(crate) struct ReachBudget {
    /// Words left.
    pub(crate) words: usize,
}

/// The budget was exhausted.
#[derive(Debug)]
pub(crate) struct OverBudget;

impl ReachBudget {
    fn take(&mut self, words: usize) -> Result<(), OverBudget> {
        self.words = self.words.checked_sub(words).ok_or(OverBudget)?;
        Ok(())
    }
}

/// Or-accumulates sets, copying only when two different non-empty sets meet.
pub(crate) struct Union {
    width: usize,
    shared: Bits,
    owned: Option<Vec<u64>>,
}

impl Union {
    pub(crate) fn new(width: usize) -> Union {
        Union {
            width,
            shared: None,
            owned: None,
        }
    }

    /// Adds one bit.
    pub(crate) fn bit(&mut self, bit: u32) {
        let words = self.owned_words();
        words[bit as usize / 64] |= 1 << (bit % 64);
    }

    /// Adds a set.
    pub(crate) fn set(&mut self, other: &Bits) {
        let Some(other) = other else { return };
        if let Some(owned) = &mut self.owned {
            for (word, add) in owned.iter_mut().zip(other.iter()) {
                *word |= add;
            }
            return;
        }
        match &self.shared {
            None => self.shared = Some(Rc::clone(other)),
            Some(shared) if Rc::ptr_eq(shared, other) => {}
            Some(shared) if other.iter().zip(shared.iter()).all(|(o, s)| o & !s == 0) => {}
            Some(_) => {
                let words = self.owned_words();
                for (word, add) in words.iter_mut().zip(other.iter()) {
                    *word |= add;
                }
            }
        }
    }

    fn owned_words(&mut self) -> &mut Vec<u64> {
        let width = self.width;
        let shared = &self.shared;
        self.owned.get_or_insert_with(|| match shared {
            Some(shared) => shared.to_vec(),
            None => vec![0; width],
        })
    }

    /// The accumulated set; a new allocation is charged to `budget`.
    pub(crate) fn finish(self, budget: &mut ReachBudget) -> Result<Bits, OverBudget> {
        match self.owned {
            Some(words) if words.iter().any(|w| *w != 0) => {
                budget.take(words.len())?;
                Ok(Some(Rc::from(words)))
            }
            Some(_) => Ok(None),
            None => Ok(self.shared),
        }
    }
}

/// The bits set in `bits`, in increasing order.
pub(crate) fn ones(bits: &Bits) -> impl Iterator<Item = u32> + '_ {
    bits.iter().flat_map(|words| {
        words.iter().enumerate().flat_map(|(index, &word)| {
            let mut rest = word;
            core::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(index as u32 * 64 + bit)
            })
        })
    })
}

/// A call graph over `nodes` nodes, each with its own dependency set.
pub(crate) struct CallGraph {
    graph: Graph<(), (), petgraph::Directed, u32>,
    own: Vec<Bits>,
}

impl CallGraph {
    pub(crate) fn new(nodes: usize, edges: usize) -> CallGraph {
        let mut graph = Graph::with_capacity(nodes, edges);
        for _ in 0..nodes {
            graph.add_node(());
        }
        CallGraph {
            graph,
            own: vec![None; nodes],
        }
    }

    pub(crate) fn edge(&mut self, from: u32, to: u32) {
        self.graph.add_edge(
            NodeIndex::new(from as usize),
            NodeIndex::new(to as usize),
            (),
        );
    }

    pub(crate) fn set_own(&mut self, node: u32, bits: Bits) {
        self.own[node as usize] = bits;
    }

    /// Every node's reachable set (its own and every node it reaches).
    pub(crate) fn reach(
        self,
        width: usize,
        budget: &mut ReachBudget,
    ) -> Result<Vec<Bits>, OverBudget> {
        let components = petgraph::algo::kosaraju_scc(&self.graph);
        let mut component_of = vec![0u32; self.own.len()];
        for (index, component) in components.iter().enumerate() {
            for node in component {
                component_of[node.index()] = index as u32;
            }
        }
        // Sinks come first, so every successor component is done before its callers.
        let mut sets: Vec<Bits> = Vec::with_capacity(components.len());
        for (index, component) in components.iter().enumerate() {
            let mut union = Union::new(width);
            for node in component {
                union.set(&self.own[node.index()]);
                for next in self.graph.neighbors(*node) {
                    let next = component_of[next.index()] as usize;
                    if next != index {
                        union.set(&sets[next]);
                    }
                }
            }
            sets.push(union.finish(budget)?);
        }
        Ok(component_of
            .iter()
            .map(|&component| sets[component as usize].clone())
            .collect())
    }
}
