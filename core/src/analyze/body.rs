//! Function bodies: each is validated and scanned in one pass, its operators decoded
//! once straight into wasmparser's validator while the analysis listens in ([`Tap`]) and
//! notes the calls, indirect calls, `ref.func`s and globals it uses.

use alloc::vec::Vec;

use wasmparser::{
    FrameKind, FrameStack, FuncValidator, FunctionBody, ValidatorResources, WasmFeatures,
};

use super::scan::Scan;
use crate::reach::{ReachBudget, Union};

impl<'a> Scan<'a> {
    /// Validates one function body and collects what it uses, in one pass.
    pub(super) fn body(
        &mut self,
        validator: &mut FuncValidator<ValidatorResources>,
        body: &FunctionBody<'_>,
        features: WasmFeatures,
    ) -> wasmparser::Result<()> {
        self.seal_imported_globals();
        let index = self.func_imports + self.defined_functions;
        self.defined_functions += 1;
        let mut reader = body.get_binary_reader();
        validator.read_locals(&mut reader)?;
        reader.set_features(features);
        self.body.clear();
        while !reader.eof() {
            let mut tap = Tap {
                validator: validator.visitor(reader.original_position()),
                uses: &mut self.body,
            };
            reader.visit_operator(&mut tap)??;
        }
        reader.finish_expression(&validator.visitor(reader.original_position()))?;
        let width = self.width();
        let uses = &mut self.body;
        self.indirect_targets.append(&mut uses.ref_funcs);
        uses.calls.sort_unstable();
        uses.calls.dedup();
        for &callee in &uses.calls {
            self.calls.push((index, callee));
        }
        if uses.indirect {
            self.indirect_callers.push(index);
        }
        uses.globals.sort_unstable();
        uses.globals.dedup();
        let mut union = Union::new(width);
        for &global in &uses.globals {
            if let Some(behind) = self.global_behind.get(global as usize) {
                union.set(behind);
            }
        }
        let mut budget = ReachBudget { words: usize::MAX };
        self.own.push(union.finish(&mut budget).unwrap_or(None));
        Ok(())
    }
}

/// What one function body uses, as the analysis needs it.
#[derive(Default)]
pub(super) struct BodyUses {
    /// Direct callees (`call`, `return_call`).
    calls: Vec<u32>,
    /// Globals read or written.
    globals: Vec<u32>,
    /// Functions named by `ref.func`.
    ref_funcs: Vec<u32>,
    /// Whether it calls through a table or a reference.
    indirect: bool,
}

/// One operator the analysis cares about.
enum Use {
    Call(u32),
    Indirect,
    RefFunc(u32),
    Global(u32),
}

/// The [`Use`] of an operator, from its name and arguments as wasmparser's
/// `for_each_visit_operator!` spells them; `None` for every other operator.
macro_rules! use_of {
    (Call { $function:ident }) => {
        Some(Use::Call($function))
    };
    (ReturnCall { $function:ident }) => {
        Some(Use::Call($function))
    };
    (CallIndirect { $($arg:ident),* }) => {
        Some(Use::Indirect)
    };
    (ReturnCallIndirect { $($arg:ident),* }) => {
        Some(Use::Indirect)
    };
    (CallRef { $($arg:ident),* }) => {
        Some(Use::Indirect)
    };
    (ReturnCallRef { $($arg:ident),* }) => {
        Some(Use::Indirect)
    };
    (RefFunc { $function:ident }) => {
        Some(Use::RefFunc($function))
    };
    (GlobalGet { $global:ident }) => {
        Some(Use::Global($global))
    };
    (GlobalSet { $global:ident }) => {
        Some(Use::Global($global))
    };
    ($($other:tt)*) => {
        None
    };
}

/// Every `visit_*` method: note the operator's use, then let the validator check it.
macro_rules! tap_visit {
    ($(@$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*))*) => {
        $(
            #[inline]
            fn $visit(&mut self $($(,$arg: $argty)*)?) -> Self::Output {
                if let Some(used) = use_of!($op $({ $($arg),* })?) {
                    self.uses.note(used);
                }
                self.validator.$visit($($($arg),*)?)
            }
        )*
    };
}

impl BodyUses {
    fn clear(&mut self) {
        self.calls.clear();
        self.globals.clear();
        self.ref_funcs.clear();
        self.indirect = false;
    }

    fn note(&mut self, used: Use) {
        match used {
            Use::Call(function) => self.calls.push(function),
            Use::Indirect => self.indirect = true,
            Use::RefFunc(function) => self.ref_funcs.push(function),
            Use::Global(global) => self.globals.push(global),
        }
    }
}

/// wasmparser's operator validator with the analysis listening in: the body's
/// operators are decoded once, straight into the validator's visitor (as
/// `FuncValidator::validate` does), instead of into [`Operator`] values that are then
/// matched twice. SIMD operators go to the validator untouched (none calls or names
/// a function or a global).
///
/// [`Operator`]: wasmparser::Operator
struct Tap<'u, V> {
    validator: V,
    uses: &'u mut BodyUses,
}

impl<'a, V> wasmparser::VisitOperator<'a> for Tap<'_, V>
where
    V: wasmparser::VisitOperator<'a, Output = wasmparser::Result<()>>,
{
    type Output = wasmparser::Result<()>;

    fn simd_visitor(
        &mut self,
    ) -> Option<&mut dyn wasmparser::VisitSimdOperator<'a, Output = Self::Output>> {
        self.validator.simd_visitor()
    }

    wasmparser::for_each_visit_operator!(tap_visit);
}

impl<V: FrameStack> FrameStack for Tap<'_, V> {
    fn current_frame(&self) -> Option<FrameKind> {
        self.validator.current_frame()
    }
}
