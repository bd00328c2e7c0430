//! WebAssembly types as linkcache describes them: wasmparser's value and function types
//! converted to [`ValType`] and [`FuncSig`], or the reason linkcache cannot describe them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use wasmparser::{CompositeInnerType, RefType};

use crate::{FuncSig, ValType};

pub(super) fn func_sig(
    types: &wasmparser::types::TypesRef<'_>,
    index: u32,
) -> Result<FuncSig, String> {
    let id = types.core_function_at(index);
    let CompositeInnerType::Func(func) = &types[id].composite_type.inner else {
        return Err("not a function type".into());
    };
    let convert = |tys: &[wasmparser::ValType]| -> Result<Vec<ValType>, String> {
        tys.iter().map(|&t| val_type(t)).collect()
    };
    Ok(FuncSig {
        params: convert(func.params())?,
        results: convert(func.results())?,
    })
}

pub(super) fn val_type(ty: wasmparser::ValType) -> Result<ValType, String> {
    Ok(match ty {
        wasmparser::ValType::I32 => ValType::I32,
        wasmparser::ValType::I64 => ValType::I64,
        wasmparser::ValType::F32 => ValType::F32,
        wasmparser::ValType::F64 => ValType::F64,
        wasmparser::ValType::V128 => ValType::V128,
        wasmparser::ValType::Ref(r) if r == RefType::FUNCREF => ValType::FuncRef,
        wasmparser::ValType::Ref(r) if r == RefType::EXTERNREF => ValType::ExternRef,
        wasmparser::ValType::Ref(r) => return Err(format!("reference type {r:?}")),
    })
}
