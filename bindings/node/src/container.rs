//! `NativeLazyContainer`: the core's `Container` for JavaScript objects.
//!
//! JS values are not `Send`, the core's container values must be: the container holds `i32`
//! ids (as `u32`) into a table of JS objects that `lib/index.js` keeps. Ids >= 0 are
//! instances the core caches (lazy with `cache_instances`, singleton, scoped), freed by the
//! teardown when the core drops them; ids < 0 are one-shot slots for instances the core does
//! not keep (transient, lazy without caching), freed by `lib/index.js` as soon as it reads them.
//!
//! Two JS hooks given to the constructor do the translation: `create(reg)` runs the factory
//! of registration `reg` and returns the new id, `teardown(reg, id)` forgets the id and runs
//! the user's `dispose`. Both run synchronously on the JS thread, inside the container call
//! that needs them (factories call back into `get` for their dependencies; the core tracks
//! the chain on the thread).

use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use memwarden_core::{Cleanup, Container, Error as CoreError, ErrorKind, Lifetime, Scope};
use napi::bindgen_prelude::*;
use napi::{Env, sys};
use napi_derive::napi;
use serde_json::Value;

use crate::fast::{self, js_i32, js_u32};
use crate::{CoreResult, JsCallback, guarded, invalid_argument, keep_alive, normalize_numbers, to_json, type_error};

struct ContainerCore {
    container: Container<u32>,
    /// Cleared when the native object is finalized: the hooks then no longer call JS.
    alive: AtomicBool,
}

/// The native container. Use `LazyContainer` from `lib/index.js`, which owns the table of
/// instances this class hands out ids of.
#[napi(js_name = "NativeLazyContainer")]
pub struct NativeLazyContainer {
    core: Arc<ContainerCore>,
    create: Arc<JsCallback>,
    teardown: Arc<JsCallback>,
}

fn hook_fn<'a>(env: &Env, hooks: &'a Object, name: &str) -> Result<Unknown<'a>> {
    let v: Option<Unknown> = hooks.get(name)?;
    match v {
        Some(v) if v.get_type()? == ValueType::Function => Ok(v),
        _ => Err(type_error(env, &format!("new NativeLazyContainer(): '{name}' must be a function"))),
    }
}

fn parse_lifetime(env: &Env, s: &str) -> Result<Lifetime> {
    Ok(match s {
        "lazy" => Lifetime::Lazy,
        "singleton" => Lifetime::Singleton,
        "factory" | "transient" => Lifetime::Transient,
        "scoped" => Lifetime::Scoped,
        other => {
            return Err(invalid_argument(
                env,
                format!("unknown lifetime '{other}'; expected 'lazy', 'singleton', 'factory' or 'scoped'"),
            ));
        }
    })
}

#[napi]
impl NativeLazyContainer {
    /// `config`: the core's keys (`auto_wire`, `circular_detection`, `cache_instances`,
    /// `debug_mode`, `release_lazy_on_cleanup`); `hooks.create(reg) -> id`,
    /// `hooks.teardown(reg, id)`.
    #[napi(
        constructor,
        ts_args_type = "config: Record<string, any> | null, hooks: { create: (reg: number) => number; teardown: (reg: number, id: number) => void }"
    )]
    pub fn new(env: Env, this: This<Object>, config: Option<Value>, hooks: Object) -> Result<Self> {
        let cfg = normalize_numbers(config.unwrap_or(Value::Null));
        let container = guarded(&env, || Container::<u32>::from_json(&cfg))?;
        let this = &this.object;
        let create = hook_fn(&env, &hooks, "create")?;
        let teardown = hook_fn(&env, &hooks, "teardown")?;
        keep_alive(&env, this, "container:create", Some(&create))?;
        keep_alive(&env, this, "container:teardown", Some(&teardown))?;
        Ok(NativeLazyContainer {
            core: Arc::new(ContainerCore { container, alive: AtomicBool::new(true) }),
            create: Arc::new(JsCallback::new(&env, &create, "container factory")?),
            teardown: Arc::new(JsCallback::new(&env, &teardown, "container dispose hook")?),
        })
    }

    /// Registers service `name` with `lifetime` (`'lazy'`, `'singleton'`, `'factory'`,
    /// `'scoped'`); `reg` is what `create` / `teardown` are called with for it.
    #[napi]
    pub fn register(&self, env: Env, name: String, lifetime: String, reg: u32, replace: bool) -> Result<()> {
        let lifetime = parse_lifetime(&env, &lifetime)?;
        let (core, create) = (self.core.clone(), self.create.clone());
        let factory = Arc::new(move || -> CoreResult<u32> {
            if !core.alive.load(Ordering::Acquire) {
                return Err(CoreError::new(
                    ErrorKind::Closed,
                    "LazyContainer: the container's JavaScript object was collected",
                ));
            }
            create
                .call_with(
                    |env| Ok(vec![js_u32(env, reg)]),
                    |env, v| {
                        let mut id = 0i32;
                        // Safety: `v` is the live return value of the call.
                        let st = unsafe { sys::napi_get_value_int32(env, v, &mut id) };
                        if st == sys::Status::napi_ok {
                            Ok(id as u32)
                        } else {
                            Err(CoreError::callback("LazyContainer: the factory wrapper did not return an instance id"))
                        }
                    },
                )?
                .ok_or_else(|| CoreError::callback("LazyContainer: the factory was collected"))
        });
        let (core, teardown) = (self.core.clone(), self.teardown.clone());
        let teardown = Arc::new(move |id: &u32| -> CoreResult<()> {
            if !core.alive.load(Ordering::Acquire) {
                return Ok(());
            }
            teardown.call(|env| Ok(vec![js_u32(env, reg), js_i32(env, *id as i32)]))
        });
        guarded(&env, || self.core.container.register(&name, lifetime, factory, Some(teardown), replace))
    }

    /// `{ get }`: `get(name) -> id` as a plain function (a class method costs napi-rs'
    /// borrow and identity checks, several times the lookup itself).
    #[napi(ts_return_type = "{ get: (name: string) => number }")]
    pub fn fast_paths(&self, env: Env) -> Result<Object<'_>> {
        let obj = fast::functions(&env, &self.core, "the container's functions", &[(c"get", Some(fast_get))])?;
        Ok(Object::from_raw(env.raw(), obj))
    }

    /// The ids of every service tagged `tag`, in registration order.
    #[napi]
    pub fn get_by_tag(&self, env: Env, tag: String) -> Result<Vec<i32>> {
        guarded(&env, || self.core.container.get_by_tag(&tag)).map(|v| v.into_iter().map(|id| id as i32).collect())
    }

    #[napi]
    pub fn has(&self, name: String) -> bool {
        self.core.container.has(&name)
    }

    #[napi]
    pub fn alias(&self, env: Env, alias: String, name: String) -> Result<()> {
        guarded(&env, || self.core.container.alias(&alias, &name))
    }

    #[napi]
    pub fn tag(&self, env: Env, name: String, tags: Vec<String>) -> Result<()> {
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        guarded(&env, || self.core.container.tag(&name, &tags))
    }

    /// Registered service names, in registration order.
    #[napi]
    pub fn names(&self) -> Vec<String> {
        self.core.container.names()
    }

    #[napi]
    pub fn create_scope(&self, env: Env) -> Result<NativeScope> {
        let scope = guarded(&env, || self.core.container.create_scope())?;
        Ok(NativeScope { scope })
    }

    /// Disposes open scopes, then tears down cached instances, newest first. Idempotent.
    #[napi]
    pub fn dispose(&self, env: Env) -> Result<()> {
        guarded(&env, || self.core.container.dispose())
    }

    /// Drops cached lazy (not singleton) instances; returns how many.
    #[napi]
    pub fn release_lazy(&self, env: Env) -> Result<u32> {
        guarded(&env, || Ok(self.core.container.release_lazy() as u32))
    }

    #[napi(ts_return_type = "Record<string, any>")]
    pub fn statistics(&self) -> Value {
        self.core.container.statistics()
    }

    /// The effective configuration, defaults filled in.
    #[napi(ts_return_type = "Record<string, boolean>")]
    pub fn config(&self, env: Env) -> Result<Value> {
        let c = self.core.container.config();
        to_json(
            &env,
            Ok(serde_json::json!({
                "auto_wire": c.auto_wire,
                "circular_detection": c.circular_detection,
                "cache_instances": c.cache_instances,
                "debug_mode": c.debug_mode,
                "release_lazy_on_cleanup": c.release_lazy_on_cleanup,
            })),
        )
    }
}

impl NativeLazyContainer {
    /// The container's cleanup (drops lazy instances with `release_lazy_on_cleanup`).
    pub(crate) fn cleanup_hook(&self) -> Arc<dyn Cleanup> {
        Arc::new(self.core.container.clone())
    }
}

impl Drop for NativeLazyContainer {
    fn drop(&mut self) {
        self.core.alive.store(false, Ordering::Release);
    }
}

/// One scope of a `NativeLazyContainer`.
#[napi(js_name = "NativeScope")]
pub struct NativeScope {
    scope: Scope<u32>,
}

#[napi]
impl NativeScope {
    #[napi]
    pub fn get(&self, env: Env, name: String) -> Result<i32> {
        guarded(&env, || self.scope.get(&name)).map(|id| id as i32)
    }

    /// Tears down this scope's instances, newest first. Idempotent.
    #[napi]
    pub fn dispose(&self, env: Env) -> Result<()> {
        guarded(&env, || self.scope.dispose())
    }
}

// ---- fast path -------------------------------------------------------------------------

unsafe extern "C" fn fast_get(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // Safety: this is the callback of the `get` function made by `fast_paths`, whose data is
    // an `Arc<ContainerCore>`.
    let (core, [name], _) = unsafe { fast::args::<ContainerCore, 1>(env, info) };
    let e = Env::from_raw(env);
    // Short names are read into a stack buffer: no allocation on the hot path.
    let (mut buf, mut owned) = ([0u8; 256], String::new());
    let Some(name) = fast::str_arg(env, name, &mut buf, &mut owned) else {
        let _ = type_error(&e, "LazyContainer.get(): 'name' must be a string");
        return ptr::null_mut();
    };
    match guarded(&e, || core.container.get(name)) {
        Ok(id) => js_i32(env, id as i32),
        // The exception is pending already.
        Err(_) => ptr::null_mut(),
    }
}
