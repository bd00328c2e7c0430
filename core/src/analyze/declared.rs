//! Declared dependencies: a compiler's declaration for one function, checked against
//! what the analysis found and what the module imports.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;

use super::{AnalysisError, Declared};
use crate::Name;

/// Checks a compiler's declaration against what the analysis found (`calls`,
/// `globals`) and the module's cache imports (`imported`: func_names, globals).
pub(super) fn check_declaration(
    function: &str,
    declaration: &Declared,
    imported: (&BTreeSet<&str>, &BTreeSet<&str>),
    calls: &BTreeSet<&str>,
    globals: &BTreeSet<&str>,
) -> Result<(Vec<Name>, Vec<Name>), AnalysisError> {
    let declared_calls: BTreeSet<&str> = declaration.calls.iter().map(String::as_str).collect();
    let declared_globals: BTreeSet<&str> = declaration.globals.iter().map(String::as_str).collect();
    let not_imported = |dependency: &str| AnalysisError::DeclaredNotImported {
        function: function.into(),
        dependency: dependency.into(),
    };
    if let Some(dep) = declared_calls.iter().find(|d| !imported.0.contains(*d)) {
        return Err(not_imported(dep));
    }
    if let Some(dep) = declared_globals.iter().find(|d| !imported.1.contains(*d)) {
        return Err(not_imported(dep));
    }
    let undeclared = calls
        .difference(&declared_calls)
        .chain(globals.difference(&declared_globals))
        .next();
    if let Some(dependency) = undeclared {
        return Err(AnalysisError::UndeclaredDependency {
            function: function.into(),
            dependency: (*dependency).into(),
        });
    }
    Ok((
        declared_calls.into_iter().map(Name::from).collect(),
        declared_globals.into_iter().map(Name::from).collect(),
    ))
}
