//! A [`KeptPlan`] and the global decisions it depended on, as bytes without serde:
//! [`KeptPlan::to_compact`] and [`KeptPlan::from_compact`].
//!
//! The browser host stores kept plans in a package every fresh tab downloads; serde's
//! derived code for a plan's types, instantiated for bincode, cost it about 28 KB of
//! wasm (measured on linkcache-web's release package). This form reuses the manifest
//! payloads the package decodes anyway ([`record::decode_payload`] of a [`Manifest`])
//! and writes everything else as LEB128 numbers, tags and length-prefixed strings.
//! Reading it back never panics and never allocates more than the input could hold; it
//! checks only the form: [`KeptPlan::into_plan`] checks the plan.
//!
//! ```text
//! plan     str target, u32 target_module, vec<module>, vec<vec<u32>> cycles,
//!          vec<(u32, u32)> bindings, vec<(str, valtype, value)> set_globals,
//!          vec<(global, outcome)> globals
//! module   bytes manifest (a record payload), vec<import>
//! import   0 export u32 | 1 trampoline | 2 lazy | 3 global binding | 4 embedder
//! binding  0 value | 1 placeholder valtype | 2 shared valtype
//! value    valtype, then i32/f32 as u32, i64/f64 as u64, v128 as 16 bytes
//! global   0 planned u32 module, u32 global | 1 other 32-byte module id, str name,
//!          valtype, u8 mutable, bytes definition
//! outcome  0 ok value | 1 stale str
//! vec, str, bytes: a u32 length first
//! ```

use alloc::string::String;
use alloc::vec::Vec;

use super::kept::{KeptImport, KeptModule};
use super::{GlobalBinding, KeptGlobal, KeptPlan};
use crate::record::{self, RecordKind};
use crate::{GlobalDef, GlobalOutcome, Manifest, ModuleId, Name, ValType, Value};

struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, mut n: u64) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn len(&mut self, n: usize) {
        self.uint(n as u64);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    fn valtype(&mut self, ty: ValType) {
        self.0.push(match ty {
            ValType::I32 => 0,
            ValType::I64 => 1,
            ValType::F32 => 2,
            ValType::F64 => 3,
            ValType::V128 => 4,
            ValType::FuncRef => 5,
            ValType::ExternRef => 6,
        });
    }

    fn value(&mut self, value: &Value) {
        self.valtype(value.ty());
        match *value {
            Value::I32(x) => self.uint(u64::from(x as u32)),
            Value::I64(x) => self.uint(x as u64),
            Value::F32(bits) => self.uint(u64::from(bits)),
            Value::F64(bits) => self.uint(bits),
            Value::V128(x) => self.0.extend_from_slice(&x.to_le_bytes()),
        }
    }

    fn binding(&mut self, binding: &GlobalBinding) {
        match binding {
            GlobalBinding::Value(value) => {
                self.0.push(0);
                self.value(value);
            }
            GlobalBinding::Placeholder(ty) => {
                self.0.push(1);
                self.valtype(*ty);
            }
            GlobalBinding::Shared(ty) => {
                self.0.push(2);
                self.valtype(*ty);
            }
        }
    }
}

const TRUNCATED: &str = "the kept plan is truncated";

/// Reads what [`Writer`] wrote; every error says what is wrong.
struct Reader<'a>(&'a [u8]);

type Read<T> = Result<T, &'static str>;

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Read<u8> {
        let (&first, rest) = self.0.split_first().ok_or(TRUNCATED)?;
        self.0 = rest;
        Ok(first)
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if n > self.0.len() {
            return Err(TRUNCATED);
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn uint(&mut self) -> Read<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("a number of the kept plan is too long")
    }

    fn u32(&mut self) -> Read<u32> {
        u32::try_from(self.uint()?).map_err(|_| "a number of the kept plan is too large")
    }

    /// A length, at most what the rest could hold with `min` bytes per item (so that
    /// no forged length allocates more than the input).
    fn len(&mut self, min: usize) -> Read<usize> {
        let n = usize::try_from(self.uint()?).unwrap_or(usize::MAX);
        if n.saturating_mul(min) > self.0.len() {
            return Err("a length of the kept plan exceeds its bytes");
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Read<&'a [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }

    fn string(&mut self) -> Read<String> {
        core::str::from_utf8(self.bytes()?)
            .map(String::from)
            .map_err(|_| "a name of the kept plan is not UTF-8")
    }

    fn vec<T>(&mut self, min: usize, mut item: impl FnMut(&mut Self) -> Read<T>) -> Read<Vec<T>> {
        let n = self.len(min)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }

    fn valtype(&mut self) -> Read<ValType> {
        Ok(match self.byte()? {
            0 => ValType::I32,
            1 => ValType::I64,
            2 => ValType::F32,
            3 => ValType::F64,
            4 => ValType::V128,
            5 => ValType::FuncRef,
            6 => ValType::ExternRef,
            _ => return Err("unknown value type in the kept plan"),
        })
    }

    fn value(&mut self) -> Read<Value> {
        let ty = self.valtype()?;
        let narrow = |n: u64| u32::try_from(n).map_err(|_| "a 32-bit value is too large");
        Ok(match ty {
            ValType::I32 => Value::I32(narrow(self.uint()?)? as i32),
            ValType::I64 => Value::I64(self.uint()? as i64),
            ValType::F32 => Value::F32(narrow(self.uint()?)?),
            ValType::F64 => Value::F64(self.uint()?),
            ValType::V128 => {
                let mut le = [0; 16];
                le.copy_from_slice(self.take(16)?);
                Value::V128(u128::from_le_bytes(le))
            }
            ValType::FuncRef | ValType::ExternRef => {
                return Err("a reference value in the kept plan");
            }
        })
    }

    fn binding(&mut self) -> Read<GlobalBinding> {
        Ok(match self.byte()? {
            0 => GlobalBinding::Value(self.value()?),
            1 => GlobalBinding::Placeholder(self.valtype()?),
            2 => GlobalBinding::Shared(self.valtype()?),
            _ => return Err("unknown global binding in the kept plan"),
        })
    }
}

impl KeptPlan {
    /// This plan and the decisions `globals` (from [`KeptPlan::keep_globals`]) as compact
    /// bytes for a host to store (manifest payloads, LEB128 numbers, tags and
    /// length-prefixed strings; the layout is in `core/src/plan/compact.rs`), read back
    /// by [`KeptPlan::from_compact`].
    pub fn to_compact(&self, globals: &[(KeptGlobal, GlobalOutcome)]) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.bytes(self.target.as_bytes());
        w.uint(u64::from(self.target_module));
        w.len(self.modules.len());
        for module in &self.modules {
            w.bytes(&record::encode_payload(&module.manifest));
            w.len(module.imports.len());
            for import in &module.imports {
                match import {
                    KeptImport::Export(at) => {
                        w.0.push(0);
                        w.uint(u64::from(*at));
                    }
                    KeptImport::Trampoline => w.0.push(1),
                    KeptImport::Lazy => w.0.push(2),
                    KeptImport::Global(binding) => {
                        w.0.push(3);
                        w.binding(binding);
                    }
                    KeptImport::Embedder => w.0.push(4),
                }
            }
        }
        w.len(self.cycles.len());
        for group in &self.cycles {
            w.len(group.len());
            for at in group {
                w.uint(u64::from(*at));
            }
        }
        w.len(self.bindings.len());
        for (module, function) in &self.bindings {
            w.uint(u64::from(*module));
            w.uint(u64::from(*function));
        }
        w.len(self.set_globals.len());
        for (name, ty, value) in &self.set_globals {
            w.bytes(name.as_bytes());
            w.valtype(*ty);
            w.value(value);
        }
        w.len(globals.len());
        for (global, outcome) in globals {
            match global {
                KeptGlobal::Planned { module, global } => {
                    w.0.push(0);
                    w.uint(u64::from(*module));
                    w.uint(u64::from(*global));
                }
                KeptGlobal::Other(module, def) => {
                    w.0.push(1);
                    w.0.extend_from_slice(module.as_bytes());
                    w.bytes(def.name.as_bytes());
                    w.valtype(def.ty);
                    w.0.push(u8::from(def.mutable));
                    w.bytes(&def.definition);
                }
            }
            match outcome {
                Ok(value) => {
                    w.0.push(0);
                    w.value(value);
                }
                Err(reason) => {
                    w.0.push(1);
                    w.bytes(reason.as_bytes());
                }
            }
        }
        w.0
    }

    /// A plan and its global decisions read back from [`KeptPlan::to_compact`]'s form,
    /// or what is wrong with the bytes. Only the form is checked here; turn the plan
    /// into a [`LoadPlan`](super::LoadPlan) with [`KeptPlan::into_plan`], which checks
    /// the rest.
    #[allow(clippy::type_complexity)]
    pub fn from_compact(
        bytes: &[u8],
    ) -> Result<(KeptPlan, Vec<(KeptGlobal, GlobalOutcome)>), String> {
        read_compact(bytes).map_err(String::from)
    }
}

#[allow(clippy::type_complexity)]
fn read_compact(bytes: &[u8]) -> Read<(KeptPlan, Vec<(KeptGlobal, GlobalOutcome)>)> {
    let mut r = Reader(bytes);
    let target = r.string()?;
    let target_module = r.u32()?;
    let modules = r.vec(2, |r| {
        let manifest: Manifest = record::decode_payload(RecordKind::FreshPlan, r.bytes()?)
            .map_err(|_| "a manifest of the kept plan does not decode")?;
        let imports = r.vec(1, |r| {
            Ok(match r.byte()? {
                0 => KeptImport::Export(r.u32()?),
                1 => KeptImport::Trampoline,
                2 => KeptImport::Lazy,
                3 => KeptImport::Global(r.binding()?),
                4 => KeptImport::Embedder,
                _ => return Err("unknown import binding in the kept plan"),
            })
        })?;
        Ok(KeptModule { manifest, imports })
    })?;
    let cycles = r.vec(1, |r| r.vec(1, Reader::u32))?;
    let bindings = r.vec(2, |r| Ok((r.u32()?, r.u32()?)))?;
    let set_globals = r.vec(3, |r| {
        Ok((Name::from(r.string()?), r.valtype()?, r.value()?))
    })?;
    let globals = r.vec(3, |r| {
        let global = match r.byte()? {
            0 => KeptGlobal::Planned {
                module: r.u32()?,
                global: r.u32()?,
            },
            1 => {
                let mut id = [0; 32];
                id.copy_from_slice(r.take(32)?);
                let def = GlobalDef {
                    name: Name::from(r.string()?),
                    ty: r.valtype()?,
                    mutable: r.byte()? != 0,
                    definition: r.bytes()?.to_vec(),
                };
                KeptGlobal::Other(ModuleId::from_bytes(id), def)
            }
            _ => return Err("unknown kept global in the kept plan"),
        };
        let outcome = match r.byte()? {
            0 => Ok(r.value()?),
            1 => Err(r.string()?),
            _ => return Err("unknown global outcome in the kept plan"),
        };
        Ok((global, outcome))
    })?;
    if !r.0.is_empty() {
        return Err("unused bytes after the kept plan");
    }
    let plan = KeptPlan {
        target,
        target_module,
        modules,
        cycles,
        bindings,
        set_globals,
    };
    Ok((plan, globals))
}
