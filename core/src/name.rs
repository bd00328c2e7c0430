//! [`Name`]: a func_name, global name or import namespace as a manifest holds it.
//!
//! Manifests are read far more often than written (every plan that reaches a module
//! reads its manifest, and a kept plan decodes the manifests of every planned module),
//! and almost every name in them is short (`math.fib`, `linkcache:fn`). A `Name` keeps
//! up to 24 bytes inline (`compact_str`), so decoding a manifest allocates per list, not
//! per name. It reads as a `&str` everywhere and serializes exactly as a `String` does,
//! so records are unchanged.

use alloc::string::String;
use core::borrow::Borrow;
use core::fmt;
use core::ops::Deref;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// A name in a manifest: a `str` kept inline when it is at most 24 bytes long, so that
/// decoding a manifest allocates per list, not per name. It reads as a `&str` and
/// serializes exactly as a `String` does.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(CompactString);

impl Name {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0.as_str(), f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl From<&str> for Name {
    fn from(name: &str) -> Name {
        Name(CompactString::from(name))
    }
}

impl From<&String> for Name {
    fn from(name: &String) -> Name {
        Name(CompactString::from(name.as_str()))
    }
}

impl From<String> for Name {
    fn from(name: String) -> Name {
        Name(CompactString::from(name))
    }
}

impl From<&Name> for String {
    fn from(name: &Name) -> String {
        String::from(name.as_str())
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        String::from(name.as_str())
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;

    use super::Name;
    use crate::record::{self, RecordKind};

    #[test]
    fn a_name_is_encoded_exactly_as_a_string_so_records_are_unchanged() {
        let long = "a.func_name.longer.than.twenty-four.bytes";
        let strings: (String, Vec<String>) = (long.into(), vec!["m.f".into(), String::new()]);
        let names: (Name, Vec<Name>) = (long.into(), vec!["m.f".into(), "".into()]);
        let bytes = record::encode_payload(&strings);
        assert_eq!(record::encode_payload(&names), bytes);
        let decoded: (Name, Vec<Name>) =
            record::decode_payload(RecordKind::Manifest, &bytes).unwrap();
        assert_eq!(decoded, names);
        assert_eq!(decoded.0, long);
        assert_eq!(decoded.1[0].as_str(), "m.f");
    }
}
