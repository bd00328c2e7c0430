//! What the search knows of global definitions: the decision on each definition of a
//! manifest in the closure (a value, stale, or undecided), looked up once per search.

use alloc::format;

use super::{Known, Search};
use crate::plan::GlobalKey;
use crate::{GlobalDef, Value};

impl<'a> Search<'a> {
    /// The decision on the global definition `index` of `slot`'s manifest, if known
    /// (without asking for it), computed once per search: its value, or why it is stale
    /// in this process ([`Search::stale_reason`]).
    pub(in crate::plan) fn known_global(
        &mut self,
        slot: usize,
        index: usize,
    ) -> Option<Result<Value, ()>> {
        let at = self.slots[slot].known_at + index;
        if let Known::Unasked = self.known[at] {
            let Ok(manifest) = self.slots[slot].manifest else {
                unreachable!("globals are asked of intact manifests")
            };
            self.known[at] = self.decide(&manifest.globals[index]);
        }
        match &self.known[at] {
            Known::Unasked | Known::Undecided => None,
            Known::Value(value) => Some(Ok(*value)),
            Known::Stale(_) => Some(Err(())),
        }
    }

    /// Why the global definition `index` of `slot`'s manifest is stale, once
    /// [`Search::known_global`] said it is.
    pub(super) fn stale_reason(&self, slot: usize, index: usize) -> &str {
        match &self.known[self.slots[slot].known_at + index] {
            Known::Stale(reason) => reason,
            _ => unreachable!("asked only of stale globals"),
        }
    }

    fn decide(&self, def: &GlobalDef) -> Known {
        if !self.any_global_decided {
            return Known::Undecided;
        }
        let key = GlobalKey::of(def);
        let Some(outcome) = self
            .linkage
            .global_outcome(&key)
            .or_else(|| self.planner.globals.get(&key))
        else {
            return Known::Undecided;
        };
        match outcome {
            Err(reason) => Known::Stale(reason.clone()),
            Ok(value) => {
                if def.mutable
                    && let Some(shared) = self.linkage.shared_global(&def.name)
                    && shared != *value
                {
                    Known::Stale(format!(
                        "it defines {value}, but this process already set the global to {shared}"
                    ))
                } else {
                    Known::Value(*value)
                }
            }
        }
    }
}
