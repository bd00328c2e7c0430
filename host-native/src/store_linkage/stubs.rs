//! The host functions that stand for a func_name in a store: a lazy stub (an edge
//! outside the plan's closure, targeted on its first call) and a trampoline (an edge
//! within a group of modules that import each other), synchronous or asynchronous as
//! the store is called.

use std::sync::Arc;

use linkcache_core::FuncSig;
use wasmtime::{AsContextMut, Func, StoreContextMut};

use super::LinkageView;
#[cfg(feature = "async")]
use super::target::target;
use super::target::target_sync;
use crate::error::Error;
use crate::load::func_type;

pub(super) fn forwarding_stub<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    func_name: &str,
    signature: &FuncSig,
    lazy: bool,
    asynchronous: bool,
) -> Func {
    let ty = func_type(cx.engine(), signature);
    let func_name: Arc<str> = func_name.into();
    let signature = Arc::new(signature.clone());
    if asynchronous {
        return async_forwarding_stub(cx, ty, func_name, signature, lazy);
    }
    Func::new(&mut *cx, ty, move |mut caller, params, results| {
        let bound = caller.data_mut().linkage().funcs.get(&*func_name).copied();
        let func = match bound {
            Some(func) => func,
            None if lazy => {
                let mut cx = caller.as_context_mut();
                target_sync(&mut cx, &func_name, Some(&signature), true)
                    .map_err(|e| lazy_error(&func_name, e))?
                    .func
            }
            None => return Err(unbound_trampoline(&func_name)),
        };
        func.call(&mut caller, params, results)
    })
}

/// Makes a lazy stub or trampoline for an asynchronous store. A plain function pointer
/// kept in the linkage, because async host functions need `T: Send`, which
/// [`Cache::async_store_linkage`] proves once and the generic load path does not know.
pub(super) type AsyncStubFn<T> =
    fn(&mut StoreContextMut<'_, T>, wasmtime::FuncType, Arc<str>, Arc<FuncSig>, bool) -> Func;

fn async_forwarding_stub<T: LinkageView>(
    cx: &mut StoreContextMut<'_, T>,
    ty: wasmtime::FuncType,
    func_name: Arc<str>,
    signature: Arc<FuncSig>,
    lazy: bool,
) -> Func {
    let make = cx
        .data_mut()
        .linkage()
        .async_stub
        .expect("an asynchronous linkage has an async stub maker");
    make(cx, ty, func_name, signature, lazy)
}

#[cfg(feature = "async")]
pub(super) fn make_async_stub<T: LinkageView + Send>(
    cx: &mut StoreContextMut<'_, T>,
    ty: wasmtime::FuncType,
    func_name: Arc<str>,
    signature: Arc<FuncSig>,
    lazy: bool,
) -> Func {
    Func::new_async(&mut *cx, ty, move |mut caller, params, results| {
        let func_name = Arc::clone(&func_name);
        let signature = Arc::clone(&signature);
        Box::new(async move {
            let bound = caller.data_mut().linkage().funcs.get(&*func_name).copied();
            let func = match bound {
                Some(func) => func,
                None if lazy => {
                    let mut cx = caller.as_context_mut();
                    let target = Box::pin(target(&mut cx, &func_name, Some(&signature), true));
                    target.await.map_err(|e| lazy_error(&func_name, e))?.func
                }
                None => return Err(unbound_trampoline(&func_name)),
            };
            func.call_async(&mut caller, params, results).await
        })
    })
}

fn lazy_error(func_name: &str, error: Error) -> wasmtime::Error {
    wasmtime::Error::msg(format!("lazy call of `{func_name}`: {error}"))
}

fn unbound_trampoline(func_name: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "trampoline to `{func_name}` called before its module group was bound"
    ))
}
