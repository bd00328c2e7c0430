//! The schema upgrade: what opening at [`SCHEMA_VERSION`](crate::store::SCHEMA_VERSION)
//! does, in the upgrade transaction (see "Upgrades" in [`crate::store`]).

use idb::{DatabaseEvent, Event, IndexParams, KeyPath, ObjectStoreParams, Request};

use super::{BY_FUNCTION, MANIFESTS, META, MODULES, PLANS, USED};

/// Brings a database of any older layout to this one (in the upgrade transaction):
/// creates missing stores and the index, drops any other store.
pub(super) fn upgrade(event: &idb::event::VersionChangeEvent) -> Result<(), idb::Error> {
    let db = event.database()?;
    let existing = db.store_names();
    for name in &existing {
        if ![MODULES, MANIFESTS, META, USED, PLANS].contains(&name.as_str()) {
            db.delete_object_store(name)?;
        }
    }
    let has = |name: &str| existing.iter().any(|n| n == name);
    for name in [MODULES, META, USED, PLANS] {
        if !has(name) {
            db.create_object_store(name, ObjectStoreParams::new())?;
        }
    }
    let manifests = if has(MANIFESTS) {
        let upgrading = event
            .target()?
            .transaction()
            .ok_or(idb::Error::EventTargetNotFound)?;
        upgrading.object_store(MANIFESTS)?
    } else {
        db.create_object_store(MANIFESTS, ObjectStoreParams::new())?
    };
    if !manifests.index_names().iter().any(|n| n == BY_FUNCTION) {
        let mut params = IndexParams::new();
        params.multi_entry(true);
        manifests.create_index(BY_FUNCTION, KeyPath::new_single("functions"), Some(params))?;
    }
    Ok(())
}
