//! Value types, function signatures and values, independent of any wasm engine.
//!
//! Hosts convert these to and from their engine's types (wasmtime's `ValType`, a JS
//! number); the core only needs to compare signatures and carry global values.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

/// A WebAssembly value type, as far as linkcache needs to tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ValType {
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// 128-bit vector.
    V128,
    /// `funcref` (nullable).
    FuncRef,
    /// `externref` (nullable).
    ExternRef,
}

impl ValType {
    /// The zero value of a numeric type, used as a placeholder for a global that is never
    /// read (see [`crate::GlobalBinding::Placeholder`]); `None` for reference types.
    pub fn zero(self) -> Option<Value> {
        Some(match self {
            ValType::I32 => Value::I32(0),
            ValType::I64 => Value::I64(0),
            ValType::F32 => Value::F32(0),
            ValType::F64 => Value::F64(0),
            ValType::V128 => Value::V128(0),
            ValType::FuncRef | ValType::ExternRef => return None,
        })
    }
}

impl fmt::Display for ValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
            ValType::V128 => "v128",
            ValType::FuncRef => "funcref",
            ValType::ExternRef => "externref",
        })
    }
}

/// A function signature: parameter and result types.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FuncSig {
    /// Parameter types, in order.
    pub params: Vec<ValType>,
    /// Result types, in order.
    pub results: Vec<ValType>,
}

impl FuncSig {
    /// A signature from parameter and result types.
    pub fn new(params: impl Into<Vec<ValType>>, results: impl Into<Vec<ValType>>) -> FuncSig {
        FuncSig {
            params: params.into(),
            results: results.into(),
        }
    }
}

impl fmt::Display for FuncSig {
    /// `(i64, i32) -> i64`, `() -> ()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, types: &[ValType]) -> fmt::Result {
            f.write_str("(")?;
            for (i, ty) in types.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{ty}")?;
            }
            f.write_str(")")
        }
        list(f, &self.params)?;
        f.write_str(" -> ")?;
        list(f, &self.results)
    }
}

/// A numeric WebAssembly value: what a global is set to.
///
/// Floats are kept as their bit patterns so that values compare exactly (NaN payloads
/// included); use [`Value::from_f32`] / [`Value::as_f64`] and friends to convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// An `i32`.
    I32(i32),
    /// An `i64`.
    I64(i64),
    /// Bits of an `f32`.
    F32(u32),
    /// Bits of an `f64`.
    F64(u64),
    /// A `v128`.
    V128(u128),
}

impl Value {
    /// An `f32` value.
    pub fn from_f32(x: f32) -> Value {
        Value::F32(x.to_bits())
    }

    /// An `f64` value.
    pub fn from_f64(x: f64) -> Value {
        Value::F64(x.to_bits())
    }

    /// The type of this value.
    pub fn ty(&self) -> ValType {
        match self {
            Value::I32(_) => ValType::I32,
            Value::I64(_) => ValType::I64,
            Value::F32(_) => ValType::F32,
            Value::F64(_) => ValType::F64,
            Value::V128(_) => ValType::V128,
        }
    }

    /// The value as an `f64`, converting integers and `f32`; `None` for `v128`.
    pub fn as_f64(&self) -> Option<f64> {
        Some(match *self {
            Value::I32(x) => x as f64,
            Value::I64(x) => x as f64,
            Value::F32(bits) => f32::from_bits(bits) as f64,
            Value::F64(bits) => f64::from_bits(bits),
            Value::V128(_) => return None,
        })
    }

    /// Parses the text of a literal of type `ty`: decimal integers (`-7`, `42`) and
    /// floats (`2.5`, `-0.0`, `nan`, `inf`), and for `v128` an integer up to 2^128.
    ///
    /// This is the default global-definition format: a global defined as the bytes `"3"`
    /// has the value 3. Embedders with their own definition format supply their own
    /// resolver instead.
    pub fn parse_literal(ty: ValType, text: &str) -> Option<Value> {
        let text = text.trim();
        Some(match ty {
            ValType::I32 => Value::I32(text.parse().ok()?),
            ValType::I64 => Value::I64(text.parse().ok()?),
            ValType::F32 => Value::from_f32(text.parse().ok()?),
            ValType::F64 => Value::from_f64(text.parse().ok()?),
            ValType::V128 => Value::V128(text.parse().ok()?),
            ValType::FuncRef | ValType::ExternRef => return None,
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::I32(x) => write!(f, "{x}"),
            Value::I64(x) => write!(f, "{x}"),
            Value::F32(bits) => write!(f, "{}", f32::from_bits(bits)),
            Value::F64(bits) => write!(f, "{}", f64::from_bits(bits)),
            Value::V128(x) => write!(f, "{x:#x}"),
        }
    }
}

/// What a global definition decodes to: the decision of the embedder's resolver.
pub type GlobalOutcome = Result<Value, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_displays_like_wat() {
        let sig = FuncSig::new([ValType::I64, ValType::I32], [ValType::I64]);
        assert_eq!(sig.to_string(), "(i64, i32) -> (i64)");
        assert_eq!(FuncSig::default().to_string(), "() -> ()");
    }

    #[test]
    fn literals_parse_by_type() {
        assert_eq!(
            Value::parse_literal(ValType::I32, " -7 "),
            Some(Value::I32(-7))
        );
        assert_eq!(
            Value::parse_literal(ValType::I64, "42"),
            Some(Value::I64(42))
        );
        assert_eq!(
            Value::parse_literal(ValType::F64, "2.5"),
            Some(Value::from_f64(2.5))
        );
        assert_eq!(Value::parse_literal(ValType::I32, "2.5"), None);
        assert_eq!(Value::parse_literal(ValType::I32, "99999999999"), None);
        assert_eq!(Value::parse_literal(ValType::FuncRef, "0"), None);
    }

    #[test]
    fn zero_matches_type() {
        for ty in [
            ValType::I32,
            ValType::I64,
            ValType::F32,
            ValType::F64,
            ValType::V128,
        ] {
            assert_eq!(ty.zero().unwrap().ty(), ty);
        }
        assert_eq!(ValType::ExternRef.zero(), None);
    }
}
