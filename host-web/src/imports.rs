//! The import object of one planned module: exports of instances made earlier (in this
//! plan or committed in this tab), forwarders for modules that import each other
//! (trampolines) and for edges outside the closure (lazy stubs), `WebAssembly.Global`s
//! for `linkcache:global` imports, and the embedder's own imports.

use std::collections::HashMap;

use js_sys::Object;
use linkcache_core::{GlobalBinding, ImportBinding, ModuleId, PlannedModule};
use wasm_bindgen::{JsCast, JsValue};

use crate::cache::LinkCache;
use crate::errors::make_forwarder;
use crate::js::{describe, new_global, prop, set, to_js, val_type_name};

impl LinkCache {
    /// The import object of `planned`; `fresh` holds the exports of the plan's earlier
    /// modules.
    pub(crate) fn import_object(
        &self,
        planned: &PlannedModule,
        fresh: &HashMap<ModuleId, Object>,
    ) -> Result<Object, String> {
        let mut inner = self.inner.borrow_mut();
        let imports = Object::new();
        for (import, binding) in planned.manifest.imports.iter().zip(&planned.imports) {
            let value: JsValue = match binding {
                ImportBinding::Export { module, func } => {
                    let exports = fresh
                        .get(module)
                        .or_else(|| inner.instances.get(module))
                        .ok_or_else(|| format!("module {} is not instantiated", module.short()))?;
                    prop(exports, func)
                }
                ImportBinding::Trampoline { func } => {
                    make_forwarder(&inner.funcs, func, false).into()
                }
                ImportBinding::Lazy { func, .. } => make_forwarder(&inner.funcs, func, true).into(),
                ImportBinding::Global { name, binding } => match binding {
                    GlobalBinding::Value(value) => {
                        new_global(val_type_name(value.ty()), false, &to_js(*value))
                            .map_err(|e| format!("global `{name}`: {}", describe(&e)))?
                    }
                    GlobalBinding::Placeholder(ty) => {
                        let zero = ty
                            .zero()
                            .ok_or_else(|| format!("global `{name}` has no placeholder"))?;
                        new_global(val_type_name(*ty), false, &to_js(zero))
                            .map_err(|e| format!("global `{name}`: {}", describe(&e)))?
                    }
                    GlobalBinding::Shared(ty) => {
                        if let Some(global) = inner.shared_globals.get(name.as_str()) {
                            global.clone()
                        } else {
                            let zero = ty
                                .zero()
                                .ok_or_else(|| format!("global `{name}` cannot be shared"))?;
                            let global = new_global(val_type_name(*ty), true, &to_js(zero))
                                .map_err(|e| format!("global `{name}`: {}", describe(&e)))?;
                            inner
                                .shared_globals
                                .insert(String::from(name), global.clone());
                            global
                        }
                    }
                },
                ImportBinding::Embedder => {
                    let value = prop(&prop(&inner.imports, &import.namespace), &import.name);
                    if value.is_undefined() {
                        return Err(format!(
                            "it imports `{}` `{}`, which the embedder's imports do not define",
                            import.namespace, import.name
                        ));
                    }
                    value
                }
            };
            let namespace = prop(&imports, &import.namespace);
            let namespace = if namespace.is_object() {
                namespace
            } else {
                let object: JsValue = Object::new().into();
                set(&imports, &import.namespace, &object);
                object
            };
            set(namespace.unchecked_ref(), &import.name, &value);
        }
        Ok(imports)
    }
}
