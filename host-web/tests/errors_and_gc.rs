//! The JS face's error classes, in a real headless Chromium: every rejection is an
//! instance of its `LinkCacheError` subclass, with the miss in its own fields and the
//! underlying error in `Error.cause`.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use linkcache_web::LinkCache;
use linkcache_web::errors::{
    LinkCacheClosed, LinkCacheCompileFailed, LinkCacheError, LinkCacheInvalidModule, LinkCacheMiss,
    LinkCacheStorage,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn prop(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap()
}

async fn wait(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

fn unique(name: &str) -> String {
    format!("{name}-{}", js_sys::Math::random().to_bits())
}

async fn open(name: &str) -> LinkCache {
    use wasm_bindgen::convert::TryFromJsValue;
    let cache = wait(LinkCache::open(name.to_string(), JsValue::UNDEFINED))
        .await
        .expect("open");
    LinkCache::try_from_js_value(cache).expect("LinkCache.open resolves to a LinkCache")
}

fn has_own(object: &JsValue, key: &str) -> bool {
    let object: &Object = object.unchecked_ref();
    Object::has_own(object, &JsValue::from_str(key))
}

#[wasm_bindgen_test]
async fn every_rejection_is_an_instance_of_its_error_class_with_the_underlying_error_as_cause() {
    let cache = open(&unique("classes")).await;

    // A miss: its cause in `missCause`, never in ES2022's `cause`.
    let miss = wait(cache.target("nowhere.f".into())).await.unwrap_err();
    assert!(miss.is_instance_of::<LinkCacheMiss>(), "{miss:?}");
    assert!(miss.is_instance_of::<LinkCacheError>());
    assert!(miss.is_instance_of::<js_sys::Error>());
    assert!(!miss.is_instance_of::<LinkCacheStorage>());
    assert_eq!(
        prop(&miss, "name").as_string().as_deref(),
        Some("LinkCacheMiss")
    );
    assert_eq!(
        prop(&miss, "missCause").as_string().as_deref(),
        Some("unknown")
    );
    assert_eq!(
        prop(&miss, "function").as_string().as_deref(),
        Some("nowhere.f")
    );
    assert!(prop(&miss, "detail").is_null());
    assert!(!has_own(&miss, "cause"), "a miss has no underlying error");
    let text = String::from(miss.unchecked_ref::<js_sys::Error>().to_string());
    assert!(text.starts_with("LinkCacheMiss: "), "{text}");

    let invalid = wait(cache.add_module("not bytes".into()))
        .await
        .unwrap_err();
    assert!(invalid.is_instance_of::<LinkCacheInvalidModule>());
    assert!(invalid.is_instance_of::<LinkCacheError>());

    // A compile callback that throws: its error is the cause. The callback itself gets
    // the miss as a LinkCacheMiss.
    let thrown: JsValue = js_sys::RangeError::new("the compiler broke").into();
    let given = Rc::new(RefCell::new(JsValue::UNDEFINED));
    let compile = {
        let (thrown, given) = (thrown.clone(), Rc::clone(&given));
        Closure::<dyn FnMut(JsValue) -> Result<JsValue, JsValue>>::new(move |miss: JsValue| {
            *given.borrow_mut() = miss;
            Err(thrown.clone())
        })
    };
    let failed = wait(cache.get_or_compile(
        "nowhere.g".into(),
        compile.as_ref().unchecked_ref::<Function>().clone(),
    ))
    .await
    .unwrap_err();
    assert!(
        failed.is_instance_of::<LinkCacheCompileFailed>(),
        "{failed:?}"
    );
    assert!(
        Object::is(&prop(&failed, "cause"), &thrown),
        "cause: what the callback threw"
    );
    assert!(given.borrow().is_instance_of::<LinkCacheMiss>());
    assert_eq!(
        prop(&given.borrow(), "function").as_string().as_deref(),
        Some("nowhere.g")
    );

    // A closed connection: a storage error, caused by IndexedDB's DOMException.
    cache.close();
    let closed = wait(cache.target("nowhere.f".into())).await.unwrap_err();
    assert!(closed.is_instance_of::<LinkCacheClosed>(), "{closed:?}");
    assert!(closed.is_instance_of::<LinkCacheStorage>());
    assert!(closed.is_instance_of::<LinkCacheError>());
    let cause = prop(&closed, "cause");
    assert!(cause.is_instance_of::<web_sys::DomException>(), "{cause:?}");
    assert_eq!(
        prop(&cause, "name").as_string().as_deref(),
        Some("InvalidStateError")
    );
    // tryTarget resolves, with the same error.
    let report = wait(cache.try_target("nowhere.f".into())).await.unwrap();
    assert!(prop(&report, "error").is_instance_of::<LinkCacheClosed>());
}
