//! The import object of one planned module: exports of instances made earlier (in this
//! plan or committed in this tab), forwarders for modules that import each other
//! (trampolines) and for edges outside the closure (lazy stubs), `WebAssembly.Global`s
//! for `linkcache:global` imports, and the embedder's own imports.

use std::collections::HashMap;

use js_sys::{Array, Object, Uint8Array};
use linkcache_core::{GlobalBinding, ImportBinding, ModuleId, PlannedModule};
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::*;

use crate::cache::LinkCache;
use crate::errors::make_forwarder;
use crate::js::{describe, new_global, to_js};

#[wasm_bindgen(inline_js = r#"
export function import_object(module, names, lengths, kinds, values, embedder) {
  const described = WebAssembly.Module.imports(module);
  if (lengths.length !== 2 * described.length) return -1;
  let at = 0;
  const next = (i) => names.slice(at, (at += lengths[i]));
  for (let i = 0; i < described.length; i++) {
    if (next(2 * i) !== described[i].module || next(2 * i + 1) !== described[i].name) return -1;
  }
  const imports = {};
  for (let i = 0; i < described.length; i++) {
    const { module: namespace, name } = described[i];
    let value = values[i];
    if (kinds[i] === 1) value = value[name];
    else if (kinds[i] === 2) {
      value = embedder?.[namespace]?.[name];
      if (value === undefined) return i;
    }
    (imports[namespace] ??= {})[name] = value;
  }
  return imports;
}
"#)]
extern "C" {
    /// The import object of `module`: for its `i`th import (`WebAssembly.Module.imports`
    /// order), `values[i]` itself (kind 0), the property of `values[i]` named as the
    /// import (kind 1: an instance's exports), or the embedder's import of that namespace
    /// and name (kind 2). Or the index of an embedder's import that is not there, or -1
    /// when the module's imports are not those of `names`: each import's namespace and
    /// name, in order, one after the other, `lengths` their lengths in UTF-16 code units
    /// (so that any name, NUL included, reads back as it is). Throws what the embedder's
    /// imports throw (a getter, a Proxy).
    #[wasm_bindgen(catch, js_name = import_object)]
    fn build_import_object(
        module: &JsValue,
        names: &str,
        lengths: &[u32],
        kinds: &Uint8Array,
        values: &Array,
        embedder: &JsValue,
    ) -> Result<JsValue, JsValue>;
}

/// How `build_import_object` takes an import's value from `values`.
mod kind {
    /// The value itself.
    pub const VALUE: u8 = 0;
    /// The property named as the import: `values[i]` is an instance's exports.
    pub const EXPORT: u8 = 1;
    /// The embedder's import of the same namespace and name.
    pub const EMBEDDER: u8 = 2;
}

impl LinkCache {
    /// The import object of `planned`, whose compiled module is `module`; `fresh` holds
    /// the exports of the plan's earlier modules.
    ///
    /// One call into JavaScript builds it, from the manifest's import names in one
    /// string, checked there against the names the compiled module lists (a planned
    /// manifest lists the imports in the module's order): a manifest that does not
    /// describe its module is a broken module, never a link by the module's own names.
    /// Built from here, a call per import and per property, the import objects of a
    /// 10-module closure with 152 imports took about 450 calls, each passing a string
    /// for JavaScript to decode: about 2.6 ms more of a fresh tab's target, in its CPU
    /// profile (session 27, BENCHMARKS.md).
    pub(crate) fn import_object(
        &self,
        planned: &PlannedModule,
        module: &JsValue,
        fresh: &HashMap<ModuleId, Object>,
    ) -> Result<Object, String> {
        let mut inner = self.inner.borrow_mut();
        let count = planned.imports.len();
        let mut kinds = Vec::with_capacity(count);
        let values = Array::new_with_length(count as u32);
        for (index, binding) in planned.imports.iter().enumerate() {
            let (kind, value): (u8, JsValue) = match binding {
                ImportBinding::Export { module, .. } => {
                    let exports = fresh
                        .get(module)
                        .or_else(|| inner.instances.get(module))
                        .ok_or_else(|| format!("module {} is not instantiated", module.short()))?;
                    (kind::EXPORT, exports.into())
                }
                ImportBinding::Trampoline { func } => (
                    kind::VALUE,
                    make_forwarder(&inner.funcs, func, false).into(),
                ),
                ImportBinding::Lazy { func, .. } => {
                    (kind::VALUE, make_forwarder(&inner.funcs, func, true).into())
                }
                ImportBinding::Global { name, binding } => {
                    let global = match binding {
                        GlobalBinding::Value(value) => {
                            new_global(value.ty(), false, &to_js(*value))
                        }
                        GlobalBinding::Placeholder(ty) => {
                            let zero = ty
                                .zero()
                                .ok_or_else(|| format!("global `{name}` has no placeholder"))?;
                            new_global(*ty, false, &to_js(zero))
                        }
                        GlobalBinding::Shared(ty) => {
                            match inner.shared_globals.get(name.as_str()) {
                                Some(global) => Ok(global.clone()),
                                None => {
                                    let zero = ty.zero().ok_or_else(|| {
                                        format!("global `{name}` cannot be shared")
                                    })?;
                                    let made = new_global(*ty, true, &to_js(zero));
                                    if let Ok(global) = &made {
                                        inner
                                            .shared_globals
                                            .insert(String::from(name), global.clone());
                                    }
                                    made
                                }
                            }
                        }
                    };
                    let global =
                        global.map_err(|e| format!("global `{name}`: {}", describe(&e)))?;
                    (kind::VALUE, global)
                }
                ImportBinding::Embedder => (kind::EMBEDDER, JsValue::UNDEFINED),
            };
            kinds.push(kind);
            values.set(index as u32, value);
        }
        // The manifest's names, checked against the module's own: one string per module.
        let mut names = String::new();
        let mut lengths = Vec::with_capacity(2 * planned.manifest.imports.len());
        for import in &planned.manifest.imports {
            for name in [&import.namespace, &import.name] {
                names.push_str(name);
                lengths.push(name.encode_utf16().count() as u32);
            }
        }
        let built = build_import_object(
            module,
            &names,
            &lengths,
            &Uint8Array::from(&kinds[..]),
            &values,
            &inner.imports,
        )
        .map_err(|e| format!("reading the embedder's imports threw: {}", describe(&e)))?;
        match built.as_f64() {
            None => Ok(built.into()),
            Some(missing) if missing >= 0.0 => {
                let import = planned.manifest.imports.get(missing as usize);
                Err(format!(
                    "it imports `{}` `{}`, which the embedder's imports do not define",
                    import.map_or("?", |i| i.namespace.as_str()),
                    import.map_or("?", |i| i.name.as_str()),
                ))
            }
            Some(_) => {
                Err("its compiled module does not have the imports its manifest lists".to_string())
            }
        }
    }
}
