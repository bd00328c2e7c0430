//! One connection to the database: [`IdbStore::open`] (creating or upgrading the
//! database, and failing at once when another connection blocks the upgrade),
//! [`IdbStore::close`], and the transactions the rest of the store runs in: [`Tx`], whose
//! `done` turns an abort into an error with the browser's reason, and the advisory
//! transactions that `close()` aborts.

use std::future::IntoFuture;
use std::rc::Rc;

use futures_util::future::{Either, select};
use idb::{DatabaseEvent, Factory, Transaction, TransactionMode};
use js_sys::{Function, Promise};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use web_sys::IdbTransaction;

use super::upgrade::upgrade;
use super::{IdbStore, SCHEMA_VERSION};
use crate::errors::{WebError, storage_error, transaction_aborted};

/// A transaction, and the raw handle that still answers `error` after it ends.
pub(super) struct Tx {
    tx: Transaction,
    pub(super) raw: IdbTransaction,
    doing: &'static str,
}

impl Tx {
    pub(super) fn store(&self, name: &str) -> Result<idb::ObjectStore, WebError> {
        self.tx
            .object_store(name)
            .map_err(|e| storage_error(self.doing, &e))
    }

    /// Waits for the transaction to commit; an abort is an error with its reason.
    pub(super) async fn done(self) -> Result<(), WebError> {
        let Tx { tx, raw, doing } = self;
        match tx.await {
            Ok(result) if result.is_committed() => Ok(()),
            Ok(_) => Err(transaction_aborted(doing, raw.error())),
            Err(e) => Err(storage_error(doing, &e)),
        }
    }
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name`. When another connection blocks
    /// the upgrade, fails with `LinkCacheUpgradeBlocked` at the browser's `blocked` event
    /// (the connection, should it open later, is closed at once). `on_closed` is called
    /// when another tab or worker's upgrade or deletion closes this connection.
    pub async fn open(name: &str, on_closed: Box<dyn FnOnce()>) -> Result<IdbStore, WebError> {
        const DOING: &str = "opening the database";
        let fail = |e: idb::Error| storage_error(DOING, &e);
        let factory = Factory::new().map_err(fail)?;
        let mut request = factory.open(name, Some(SCHEMA_VERSION)).map_err(fail)?;
        request.on_upgrade_needed(|event| {
            // An error here aborts the upgrade, and the open fails with it.
            let _ = upgrade(&event);
        });
        let mut signal: Option<Function> = None;
        let blocked = Promise::new(&mut |resolve, _| signal = Some(resolve));
        request.on_blocked(move |_| {
            if let Some(signal) = signal {
                let _ = signal.call0(&JsValue::NULL);
            }
        });
        let opening = Box::pin(request.into_future());
        let mut db = match select(opening, JsFuture::from(blocked)).await {
            Either::Left((db, _)) => db.map_err(fail)?,
            Either::Right((_, opening)) => {
                // Nobody would hold the connection if it opened later, and it would
                // block the next upgrade.
                wasm_bindgen_futures::spawn_local(async move {
                    if let Ok(db) = opening.await {
                        db.close();
                    }
                });
                return Err(WebError::new(
                    "LinkCacheUpgradeBlocked",
                    format!(
                        "opening `{name}` needs a newer database version, and another tab or worker \
                         holds an older linkcache-web's connection open; close or reload it"
                    ),
                ));
            }
        };
        db.on_version_change(move |event| {
            if let Ok(db) = event.database() {
                db.close();
            }
            on_closed();
        });
        Ok(IdbStore {
            db,
            advisory: Rc::default(),
        })
    }

    /// Closes the connection (once its running transactions finish; advisory writes,
    /// use records and plan hints, are aborted instead), so that another tab can upgrade
    /// or delete the database. Later operations fail with `LinkCacheClosed`.
    pub fn close(&self) {
        for tx in self.advisory.borrow_mut().drain(..) {
            // Finished already: nothing to abort.
            let _ = tx.abort();
        }
        self.db.close();
    }

    /// Keeps an advisory write's transaction for `close()` until `write` finishes.
    pub(super) fn advisory<T, W: Future<Output = Result<T, WebError>>>(
        &self,
        raw: IdbTransaction,
        write: W,
    ) -> impl Future<Output = Result<T, WebError>> + use<T, W> {
        self.advisory.borrow_mut().push(raw.clone());
        let advisory = Rc::clone(&self.advisory);
        async move {
            let result = write.await;
            advisory
                .borrow_mut()
                .retain(|tx| !js_sys::Object::is(tx, &raw));
            result
        }
    }

    pub(super) fn transaction(
        &self,
        stores: &[&str],
        mode: TransactionMode,
        doing: &'static str,
    ) -> Result<Tx, WebError> {
        let tx = self
            .db
            .transaction(stores, mode)
            .map_err(|e| storage_error(doing, &e))?;
        let raw: IdbTransaction = tx.into();
        Ok(Tx {
            tx: Transaction::from(raw.clone()),
            raw,
            doing,
        })
    }

    /// A read-only transaction over `stores`.
    pub(crate) fn read_transaction(
        &self,
        stores: &[&str],
        doing: &'static str,
    ) -> Result<Transaction, WebError> {
        self.db
            .transaction(stores, TransactionMode::ReadOnly)
            .map_err(|e| storage_error(doing, &e))
    }
}
