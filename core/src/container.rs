//! LazyContainer: lazy services, singletons, transients and scoped services, aliases,
//! tags, cycle detection with the whole path (also across threads), disposal in reverse
//! creation order, and statistics.
//!
//! Registration swaps in a new registry (copy on write); resolution reads the current one
//! without a lock, and a cached instance is one atomic load away. Factories call back into
//! the container through its ordinary `get`: a thread-local stack of the services being
//! resolved gives cycle paths, the depth guard and the scope a nested `get` belongs to.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, Weak};
use std::thread::ThreadId;
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cleanup::{Cleanup, CleanupLevel};
use crate::config::ConfigReader;
use crate::error::{Error, ErrorKind, Result};
use crate::probe::ProcessProbe;

/// How long an instance lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifetime {
    /// Created on first `get`; cached when `cache_instances` (else like `Transient`).
    Lazy,
    /// Created on first `get`, always cached, built exactly once.
    Singleton,
    /// A new instance on every `get`.
    Transient,
    /// One instance per scope ([`Container::create_scope`]).
    Scoped,
}

impl Lifetime {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifetime::Lazy => "lazy",
            Lifetime::Singleton => "singleton",
            Lifetime::Transient => "factory",
            Lifetime::Scoped => "scoped",
        }
    }
}

/// The seed's configuration, plus `release_lazy_on_cleanup`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerConfig {
    /// Resolve constructor parameters from what the host exposes (done by the bindings).
    pub auto_wire: bool,
    /// Detect cycles and report their path. Off, a depth guard still stops runaway recursion.
    pub circular_detection: bool,
    /// Cache `lazy` instances (singletons are always cached).
    pub cache_instances: bool,
    /// Keep per-service creation counts and times in the statistics.
    pub debug_mode: bool,
    /// Let a MemoryManager's cleanup drop cached `lazy` (not singleton) instances.
    pub release_lazy_on_cleanup: bool,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            auto_wire: true,
            circular_detection: true,
            cache_instances: true,
            debug_mode: false,
            release_lazy_on_cleanup: false,
        }
    }
}

impl ContainerConfig {
    pub const KEYS: &'static [&'static str] =
        &["auto_wire", "circular_detection", "cache_instances", "debug_mode", "release_lazy_on_cleanup"];

    pub fn from_json(value: &Value) -> Result<Self> {
        let r = ConfigReader::new("LazyContainer", value, Self::KEYS)?;
        let d = ContainerConfig::default();
        Ok(ContainerConfig {
            auto_wire: r.bool("auto_wire", d.auto_wire)?,
            circular_detection: r.bool("circular_detection", d.circular_detection)?,
            cache_instances: r.bool("cache_instances", d.cache_instances)?,
            debug_mode: r.bool("debug_mode", d.debug_mode)?,
            release_lazy_on_cleanup: r.bool("release_lazy_on_cleanup", d.release_lazy_on_cleanup)?,
        })
    }
}

/// Resolution depth that always stops recursion, even with `circular_detection` off.
pub const MAX_DEPTH: usize = 200;

pub type Factory<T> = Arc<dyn Fn() -> Result<T> + Send + Sync>;
pub type Teardown<T> = Arc<dyn Fn(&T) -> Result<()> + Send + Sync>;

/// Short string keys: FNV-1a, far cheaper than SipHash for names like "database".
#[derive(Default)]
struct NameHasher(u64);
impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}
type Map<V> = HashMap<Box<str>, V, BuildHasherDefault<NameHasher>>;

struct Service<T> {
    name: Box<str>,
    lifetime: Lifetime,
    factory: Factory<T>,
    teardown: Option<Teardown<T>>,
    /// The cached instance (lazy with cache_instances, singleton).
    instance: ArcSwapOption<T>,
    /// A singleton's instance again, set once and read without any atomic write by the hot
    /// path of [`Container::get`]. Kept until the service itself goes (see `Inner::published`).
    pinned: OnceLock<T>,
    /// Who is building it right now, so others wait (or learn of a cycle).
    building: Mutex<Option<ThreadId>>,
    built: Condvar,
    created: AtomicU64,
    creation_ns: AtomicU64,
    /// Resident bytes gained by its first creation (for `memory_saved`); u64::MAX = unmeasured.
    first_cost: AtomicU64,
}

#[derive(Clone)]
struct Registry<T> {
    services: Map<Arc<Service<T>>>,
    aliases: Map<Box<str>>,
    /// Tag -> service names, in registration order.
    tags: Map<Vec<Box<str>>>,
    /// Service names in registration order.
    order: Vec<Box<str>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry { services: Map::default(), aliases: Map::default(), tags: Map::default(), order: Vec::new() }
    }
}

/// A cached instance and its service, kept in creation order for disposal.
type Created<T> = (Arc<Service<T>>, Arc<T>);
/// Thread -> (the service it waits for, the thread building that service).
type WaitsFor = HashMap<ThreadId, (Box<str>, ThreadId)>;

struct Inner<T> {
    id: u64,
    config: ContainerConfig,
    registry: ArcSwap<Registry<T>>,
    /// The registry the hot path of `get` reads: a plain pointer load, no reference count.
    /// Null after every registration until a `get` publishes the current registry again.
    /// Every registry ever stored here is held by `published` until the container drops, so
    /// a reader that loaded the pointer just before a registration replaced it still reads
    /// live memory.
    fast: AtomicPtr<Registry<T>>,
    /// The registries `fast` has pointed to, and their total service count (bounded by
    /// [`FAST_PATH_BUDGET`]; past it `get` stays on the `registry` path).
    published: Mutex<(Vec<Arc<Registry<T>>>, usize)>,
    fast_disabled: AtomicBool,
    /// Serialises registrations (resolution never takes it).
    writer: Mutex<()>,
    /// Cached instances in creation order, for disposal.
    created_order: Mutex<Vec<Created<T>>>,
    scopes: Mutex<Vec<Weak<ScopeInner<T>>>>,
    creations: AtomicU64,
    timed_creations: AtomicU64,
    creation_ns: AtomicU64,
    disposed: std::sync::atomic::AtomicBool,
    probe: Option<ProcessProbe>,
}

/// A container of lazily created services. Cheap to clone (a handle); thread-safe.
pub struct Container<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Container<T> {
    fn clone(&self) -> Self {
        Container { inner: self.inner.clone() }
    }
}

struct ScopeInner<T> {
    container: Container<T>,
    id: u64,
    instances: Mutex<Vec<(Arc<Service<T>>, T)>>,
    disposed: std::sync::atomic::AtomicBool,
}

/// One request's worth of `scoped` instances. Disposed (reverse creation order) by
/// [`Scope::dispose`] or when the container is disposed.
pub struct Scope<T> {
    inner: Arc<ScopeInner<T>>,
}

impl<T> Clone for Scope<T> {
    fn clone(&self) -> Self {
        Scope { inner: self.inner.clone() }
    }
}

// ---- the resolution stack --------------------------------------------------

#[derive(Clone)]
struct Frame {
    container: u64,
    scope: Option<u64>,
    name: Box<str>,
    lifetime: Lifetime,
}

thread_local! {
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    /// The scope objects of the frames above, by scope id (a nested `get` finds its scope here).
    static SCOPES: RefCell<Vec<(u64, Arc<dyn std::any::Any + Send + Sync>)>> = const { RefCell::new(Vec::new()) };
}

/// Who waits for whom: thread -> (service it waits for, the thread building it).
static WAITS: LazyLock<Mutex<WaitsFor>> = LazyLock::new(|| Mutex::new(HashMap::new()));
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Pops the frame pushed for a resolution, also when the factory panics or fails.
struct FrameGuard {
    scoped: bool,
}
impl Drop for FrameGuard {
    fn drop(&mut self) {
        STACK.with(|s| s.borrow_mut().pop());
        if self.scoped {
            SCOPES.with(|s| s.borrow_mut().pop());
        }
    }
}

/// Clears a service's `building` marker and wakes the threads waiting for it.
struct Unmark<'a, T>(&'a Service<T>);
impl<T> Drop for Unmark<'_, T> {
    fn drop(&mut self) {
        *self.0.building.lock() = None;
        self.0.built.notify_all();
    }
}

fn chain_names(stack: &[Frame], container: u64) -> Vec<String> {
    stack.iter().filter(|f| f.container == container).map(|f| f.name.to_string()).collect()
}

/// Timing every transient creation would cost two clock reads each; one in this many is timed.
const TRANSIENT_TIMING_SAMPLE: u64 = 64;

/// How many service entries the registries published for the hot path may hold in all. A
/// program that registers between gets republishes a whole registry each time; past this it
/// keeps resolving through the reference-counted registry instead of holding more copies.
const FAST_PATH_BUDGET: usize = 1 << 16;

impl<T: Clone + Send + Sync + 'static> Container<T> {
    pub fn new(config: ContainerConfig) -> Self {
        Container {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                config,
                registry: ArcSwap::from_pointee(Registry::default()),
                fast: AtomicPtr::new(std::ptr::null_mut()),
                published: Mutex::new((Vec::new(), 0)),
                fast_disabled: AtomicBool::new(false),
                writer: Mutex::new(()),
                created_order: Mutex::new(Vec::new()),
                scopes: Mutex::new(Vec::new()),
                creations: AtomicU64::new(0),
                timed_creations: AtomicU64::new(0),
                creation_ns: AtomicU64::new(0),
                disposed: std::sync::atomic::AtomicBool::new(false),
                probe: ProcessProbe::new().ok(),
            }),
        }
    }

    pub fn from_json(config: &Value) -> Result<Self> {
        Ok(Self::new(ContainerConfig::from_json(config)?))
    }

    pub fn config(&self) -> &ContainerConfig {
        &self.inner.config
    }

    // ---- registration ----------------------------------------------------

    /// Registers a service. A name already registered (as a service or an alias) is an error
    /// unless `replace`; replacing drops the old service's cached instance.
    pub fn register(
        &self,
        name: &str,
        lifetime: Lifetime,
        factory: Factory<T>,
        teardown: Option<Teardown<T>>,
        replace: bool,
    ) -> Result<()> {
        check_name(name, "service")?;
        self.ensure_open()?;
        let _w = self.inner.writer.lock();
        let current = self.inner.registry.load_full();
        if current.aliases.contains_key(name) {
            return Err(Error::invalid_argument(format!("'{name}' is already registered as an alias")));
        }
        if current.services.contains_key(name) && !replace {
            return Err(Error::invalid_argument(format!(
                "service '{name}' is already registered (pass override to replace it)"
            )));
        }
        let mut next = (*current).clone();
        let service = Arc::new(Service {
            name: name.into(),
            lifetime,
            factory,
            teardown,
            instance: ArcSwapOption::empty(),
            pinned: OnceLock::new(),
            building: Mutex::new(None),
            built: Condvar::new(),
            created: AtomicU64::new(0),
            creation_ns: AtomicU64::new(0),
            first_cost: AtomicU64::new(u64::MAX),
        });
        if next.services.insert(name.into(), service).is_none() {
            next.order.push(name.into());
        }
        self.store_registry(next);
        Ok(())
    }

    /// `alias(alias, name)`: `get(alias)` resolves `name`. The target need not exist yet; a
    /// cycle of aliases is an error.
    pub fn alias(&self, alias: &str, target: &str) -> Result<()> {
        check_name(alias, "alias")?;
        check_name(target, "alias target")?;
        self.ensure_open()?;
        let _w = self.inner.writer.lock();
        let current = self.inner.registry.load_full();
        if current.services.contains_key(alias) {
            return Err(Error::invalid_argument(format!("'{alias}' is already registered as a service")));
        }
        let mut path = vec![alias.to_string()];
        let mut at = target;
        loop {
            path.push(at.to_string());
            if at == alias {
                return Err(Error::new(ErrorKind::Cycle, format!("alias cycle: {}", path.join(" -> "))));
            }
            match current.aliases.get(at) {
                Some(next) => at = next,
                None => break,
            }
        }
        let mut next = (*current).clone();
        next.aliases.insert(alias.into(), target.into());
        self.store_registry(next);
        Ok(())
    }

    /// Adds tags to a registered service (or alias); `get_by_tag` lists in registration order.
    pub fn tag(&self, name: &str, tags: &[&str]) -> Result<()> {
        self.ensure_open()?;
        let _w = self.inner.writer.lock();
        let current = self.inner.registry.load_full();
        let real = resolve_alias(&current, name)?;
        if !current.services.contains_key(real.as_str()) {
            return Err(not_registered(&current, name));
        }
        let mut next = (*current).clone();
        for t in tags {
            check_name(t, "tag")?;
            let list = next.tags.entry((*t).into()).or_default();
            if !list.iter().any(|n| **n == *real) {
                list.push(real.as_str().into());
            }
        }
        self.store_registry(next);
        Ok(())
    }

    /// Whether `name` (or an alias of it) is registered.
    pub fn has(&self, name: &str) -> bool {
        let r = self.inner.registry.load();
        resolve_alias(&r, name).map(|n| r.services.contains_key(n.as_str())).unwrap_or(false)
    }

    /// Registered service names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.inner.registry.load().order.iter().map(|n| n.to_string()).collect()
    }

    fn ensure_open(&self) -> Result<()> {
        if self.inner.disposed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Closed, "LazyContainer has been disposed"));
        }
        Ok(())
    }

    // ---- resolution --------------------------------------------------------

    /// Replaces the registry (under `writer`) and takes the hot path's pointer off it.
    fn store_registry(&self, next: Registry<T>) {
        self.inner.registry.store(Arc::new(next));
        self.inner.fast.store(std::ptr::null_mut(), Ordering::Release);
    }

    /// Points the hot path at the current registry, unless a registration is under way or
    /// the budget of published registries is spent.
    #[cold]
    fn publish_fast(&self) {
        if self.inner.fast_disabled.load(Ordering::Relaxed) {
            return;
        }
        let Some(_w) = self.inner.writer.try_lock() else { return };
        if !self.inner.fast.load(Ordering::Acquire).is_null() {
            return;
        }
        let current = self.inner.registry.load_full();
        let mut published = self.inner.published.lock();
        if published.1 + current.services.len() > FAST_PATH_BUDGET {
            self.inner.fast_disabled.store(true, Ordering::Relaxed);
            return;
        }
        published.1 += current.services.len();
        self.inner.fast.store(Arc::as_ptr(&current).cast_mut(), Ordering::Release);
        published.0.push(current);
    }

    /// Calls `f` with the instance of singleton `name` if it has been created, without taking
    /// a reference or any lock: the hot path of [`Container::get`], for bindings that turn the
    /// borrowed instance into a host reference themselves. `None` for anything else (not yet
    /// created, not a singleton, an alias, disposed); `get` resolves those.
    #[inline]
    pub fn peek_singleton<R>(&self, name: &str, f: impl FnOnce(&T) -> R) -> Option<R> {
        let fast = self.inner.fast.load(Ordering::Acquire);
        if fast.is_null() {
            self.publish_fast();
            return None;
        }
        // SAFETY: every registry `fast` ever pointed to is held by `inner.published` until
        // `Inner` drops, and `self` keeps `Inner` alive.
        let registry = unsafe { &*fast };
        let v = registry.services.get(name)?.pinned.get()?;
        if self.inner.disposed.load(Ordering::Acquire) {
            return None;
        }
        Some(f(v))
    }

    /// The instance of `name` (or of the service an alias points to).
    #[inline]
    pub fn get(&self, name: &str) -> Result<T> {
        match self.peek_singleton(name, T::clone) {
            Some(v) => Ok(v),
            None => self.get_slow(name),
        }
    }

    fn get_slow(&self, name: &str) -> Result<T> {
        let registry = self.inner.registry.load();
        let service = match registry.services.get(name) {
            Some(s) => s,
            None => {
                let real = resolve_alias(&registry, name)?;
                match registry.services.get(real.as_str()) {
                    Some(s) => s,
                    None => return Err(self.unknown(&registry, name, &real)),
                }
            }
        };
        // Hot path: a cached instance.
        if let Some(v) = service.instance.load().as_deref() {
            return Ok(v.clone());
        }
        let service = service.clone();
        drop(registry);
        let scope = match service.lifetime {
            Lifetime::Scoped => Some(self.current_scope(&service.name)?),
            _ => None,
        };
        self.resolve(&service, scope.as_ref())
    }

    fn unknown(&self, registry: &Registry<T>, asked: &str, real: &str) -> Error {
        if asked != real {
            return Error::new(
                ErrorKind::NotFound,
                format!("alias '{asked}' points to '{real}', which is not registered"),
            );
        }
        not_registered(registry, asked)
    }

    /// The instances of every service tagged `tag`, in registration order.
    pub fn get_by_tag(&self, tag: &str) -> Result<Vec<T>> {
        let names: Vec<Box<str>> = self.inner.registry.load().tags.get(tag).cloned().unwrap_or_default();
        names.iter().map(|n| self.get(n)).collect()
    }

    /// The scope of the resolution in progress on this thread, for a scoped service.
    fn current_scope(&self, name: &str) -> Result<Scope<T>> {
        let found =
            STACK.with(|s| s.borrow().iter().rev().find(|f| f.container == self.inner.id).and_then(|f| f.scope));
        let scope = found.and_then(|id| {
            SCOPES.with(|s| {
                s.borrow()
                    .iter()
                    .rev()
                    .find(|(sid, _)| *sid == id)
                    .and_then(|(_, any)| any.clone().downcast::<ScopeInner<T>>().ok())
            })
        });
        scope
            .map(|inner| Scope { inner })
            .ok_or_else(|| Error::invalid_argument(format!("service '{name}' is scoped: resolve it through a scope")))
    }

    fn resolve(&self, service: &Arc<Service<T>>, scope: Option<&Scope<T>>) -> Result<T> {
        self.ensure_open()?;
        let cid = self.inner.id;
        // Cycle check, depth guard, and the captive-dependency rule.
        STACK.with(|s| -> Result<()> {
            let stack = s.borrow();
            let mine: Vec<&Frame> = stack.iter().filter(|f| f.container == cid).collect();
            if self.inner.config.circular_detection && mine.iter().any(|f| f.name == service.name) {
                let mut path = chain_names(&stack, cid);
                let start = path.iter().position(|n| **n == *service.name).unwrap_or(0);
                path.drain(..start);
                path.push(service.name.to_string());
                return Err(Error::new(ErrorKind::Cycle, format!("circular dependency: {}", path.join(" -> "))));
            }
            if stack.len() >= MAX_DEPTH {
                let path = chain_names(&stack, cid);
                let tail = &path[path.len().saturating_sub(6)..];
                return Err(Error::new(
                    ErrorKind::Cycle,
                    format!(
                        "resolution deeper than {MAX_DEPTH} services (a cycle? circular_detection is off): ... -> {} -> {}",
                        tail.join(" -> "),
                        service.name
                    ),
                ));
            }
            if service.lifetime == Lifetime::Scoped
                && let Some(outer) = mine.iter().rev().find(|f| matches!(f.lifetime, Lifetime::Singleton | Lifetime::Lazy))
            {
                return Err(Error::invalid_argument(format!(
                    "{} '{}' cannot depend on scoped service '{}': it would outlive its scope",
                    outer.lifetime.as_str(),
                    outer.name,
                    service.name
                )));
            }
            Ok(())
        })?;

        match service.lifetime {
            Lifetime::Transient => self.create(service, scope, false),
            Lifetime::Lazy if !self.inner.config.cache_instances => self.create(service, scope, false),
            Lifetime::Scoped => {
                let scope = scope.expect("scoped services resolve in a scope");
                if let Some((_, v)) = scope.inner.instances.lock().iter().find(|(s, _)| Arc::ptr_eq(s, service)) {
                    return Ok(v.clone());
                }
                let v = self.create(service, Some(scope), true)?;
                let mut inst = scope.inner.instances.lock();
                if let Some((_, existing)) = inst.iter().find(|(s, _)| Arc::ptr_eq(s, service)) {
                    return Ok(existing.clone());
                }
                inst.push((service.clone(), v.clone()));
                Ok(v)
            }
            Lifetime::Lazy | Lifetime::Singleton => self.build_once(service, scope),
        }
    }

    /// Builds a cached service exactly once, however many threads ask at the same moment.
    fn build_once(&self, service: &Arc<Service<T>>, scope: Option<&Scope<T>>) -> Result<T> {
        let me = std::thread::current().id();
        {
            let mut building = service.building.lock();
            loop {
                if let Some(v) = service.instance.load().as_deref() {
                    return Ok(v.clone());
                }
                match *building {
                    None => {
                        *building = Some(me);
                        break;
                    }
                    Some(owner) if owner == me => {
                        // This thread is building it already: its own factory asked for it
                        // again (a cycle `circular_detection` was off for). Waiting would never end.
                        let mut path = chain_names(&STACK.with(|s| s.borrow().clone()), self.inner.id);
                        let start = path.iter().position(|n| **n == *service.name).unwrap_or(0);
                        path.drain(..start);
                        path.push(service.name.to_string());
                        return Err(Error::new(
                            ErrorKind::Cycle,
                            format!("circular dependency: {}", path.join(" -> ")),
                        ));
                    }
                    Some(owner) => {
                        // Would waiting close a cycle of threads waiting on each other?
                        let mut waits = WAITS.lock();
                        let mut path = vec![service.name.to_string()];
                        let mut t = owner;
                        while let Some((name, next)) = waits.get(&t) {
                            path.push(name.to_string());
                            if *next == me {
                                let mut full = chain_names(&STACK.with(|s| s.borrow().clone()), self.inner.id);
                                let start = full.iter().position(|n| *n == *path[path.len() - 1]).unwrap_or(0);
                                full.drain(..start);
                                full.extend(path);
                                return Err(Error::new(
                                    ErrorKind::Cycle,
                                    format!(
                                        "circular dependency: {} (resolved on two threads at once)",
                                        full.join(" -> ")
                                    ),
                                ));
                            }
                            t = *next;
                        }
                        waits.insert(me, (service.name.clone(), owner));
                        drop(waits);
                        service.built.wait(&mut building);
                        WAITS.lock().remove(&me);
                    }
                }
            }
        }
        // Clears the marker and wakes the waiters also when the factory panics, so they do
        // not wait for a build that will never finish.
        let unmark = Unmark(service);
        let result = self.create(service, scope, true);
        if let Ok(v) = &result {
            let arc = Arc::new(v.clone());
            let _building = service.building.lock();
            service.instance.store(Some(arc.clone()));
            if service.lifetime == Lifetime::Singleton {
                let _ = service.pinned.set(v.clone());
            }
            self.inner.created_order.lock().push((service.clone(), arc));
        }
        drop(unmark);
        result
    }

    /// Runs a factory inside a frame of the resolution stack, timing (and, for the first
    /// creation, measuring) it.
    fn create(&self, service: &Arc<Service<T>>, scope: Option<&Scope<T>>, always_time: bool) -> Result<T> {
        let frame = Frame {
            container: self.inner.id,
            scope: scope.map(|s| s.inner.id).or_else(|| {
                STACK.with(|s| s.borrow().iter().rev().find(|f| f.container == self.inner.id).and_then(|f| f.scope))
            }),
            name: service.name.clone(),
            lifetime: service.lifetime,
        };
        STACK.with(|s| s.borrow_mut().push(frame));
        if let Some(sc) = scope {
            SCOPES
                .with(|s| s.borrow_mut().push((sc.inner.id, sc.inner.clone() as Arc<dyn std::any::Any + Send + Sync>)));
        }
        let guard = FrameGuard { scoped: scope.is_some() };
        let n = self.inner.creations.fetch_add(1, Ordering::Relaxed);
        let first = service.created.load(Ordering::Relaxed) == 0;
        let timed = always_time || first || self.inner.config.debug_mode || n.is_multiple_of(TRANSIENT_TIMING_SAMPLE);
        let before_rss = if first { self.inner.probe.as_ref().and_then(|p| p.current_bytes().ok()) } else { None };
        let t0 = timed.then(Instant::now);
        let result = (service.factory)();
        let elapsed = t0.map(|t| t.elapsed().as_nanos() as u64);
        drop(guard);
        match result {
            Ok(v) => {
                service.created.fetch_add(1, Ordering::Relaxed);
                if let Some(ns) = elapsed {
                    service.creation_ns.fetch_add(ns, Ordering::Relaxed);
                    self.inner.creation_ns.fetch_add(ns, Ordering::Relaxed);
                    self.inner.timed_creations.fetch_add(1, Ordering::Relaxed);
                }
                if let (Some(b), Some(p)) = (before_rss, self.inner.probe.as_ref())
                    && let Ok(after) = p.current_bytes()
                {
                    let _ = service.first_cost.compare_exchange(
                        u64::MAX,
                        after.saturating_sub(b),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                Ok(v)
            }
            Err(e) => {
                self.inner.creations.fetch_sub(1, Ordering::Relaxed);
                // Name the service and the chain that led to it; keep a nested failure's text.
                if e.message().starts_with("failed to create service '") {
                    return Err(e);
                }
                let mut chain = chain_names(&STACK.with(|s| s.borrow().clone()), self.inner.id);
                chain.push(service.name.to_string());
                let kind = match e.kind() {
                    ErrorKind::Cycle | ErrorKind::NotFound | ErrorKind::Closed => e.kind(),
                    _ => ErrorKind::Callback,
                };
                if matches!(kind, ErrorKind::Cycle | ErrorKind::NotFound | ErrorKind::Closed) {
                    return Err(e);
                }
                Err(Error::new(
                    kind,
                    format!(
                        "failed to create service '{}' (via {}): {}",
                        service.name,
                        chain.join(" -> "),
                        e.message()
                    ),
                ))
            }
        }
    }

    // ---- scopes and disposal ------------------------------------------------

    /// A new scope (one request) for `scoped` services.
    pub fn create_scope(&self) -> Result<Scope<T>> {
        self.ensure_open()?;
        let inner = Arc::new(ScopeInner {
            container: self.clone(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            instances: Mutex::new(Vec::new()),
            disposed: std::sync::atomic::AtomicBool::new(false),
        });
        let mut scopes = self.inner.scopes.lock();
        scopes.retain(|w| w.strong_count() > 0);
        scopes.push(Arc::downgrade(&inner));
        Ok(Scope { inner })
    }

    /// Disposes open scopes, then runs the teardown of every cached instance in reverse
    /// creation order and forgets them. Later calls fail with `Closed`. The first teardown
    /// error is returned after all have run. A singleton's instance itself is freed when the
    /// container is (the hot path of `get` reads it without taking a reference).
    pub fn dispose(&self) -> Result<()> {
        if self.inner.disposed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let scopes: Vec<_> = self.inner.scopes.lock().drain(..).filter_map(|w| w.upgrade()).collect();
        let mut first_err = None;
        for s in scopes.into_iter().rev() {
            if let Err(e) = (Scope { inner: s }).dispose() {
                first_err.get_or_insert(e);
            }
        }
        let created: Vec<_> = std::mem::take(&mut *self.inner.created_order.lock());
        for (service, instance) in created.iter().rev() {
            service.instance.store(None);
            if let Some(td) = &service.teardown
                && let Err(e) = td(instance)
            {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Drops cached `lazy` instances (not singletons), running their teardowns in reverse
    /// creation order; returns how many went. They are created again on the next `get`.
    pub fn release_lazy(&self) -> usize {
        let dropped: Vec<_> = {
            let mut order = self.inner.created_order.lock();
            let (lazy, keep): (Vec<_>, Vec<_>) = order.drain(..).partition(|(s, _)| s.lifetime == Lifetime::Lazy);
            *order = keep;
            lazy
        };
        for (service, instance) in dropped.iter().rev() {
            service.instance.store(None);
            if let Some(td) = &service.teardown {
                let _ = td(instance);
            }
        }
        dropped.len()
    }

    // ---- statistics ----------------------------------------------------------

    /// `created` (instances created), `cached` (instances held now), `avg_creation_time` (ms,
    /// over timed creations: every lazy/singleton/scoped one and one transient creation in
    /// 64), `memory_saved` (MB: the services registered as lazy or singleton but never created,
    /// times the average resident memory the measured first creations cost), `registered`,
    /// and with `debug_mode` per-service counts and times.
    pub fn statistics(&self) -> Value {
        let registry = self.inner.registry.load();
        let cached = registry.services.values().filter(|s| s.instance.load().is_some()).count()
            + self
                .inner
                .scopes
                .lock()
                .iter()
                .filter_map(Weak::upgrade)
                .map(|s| s.instances.lock().len())
                .sum::<usize>();
        let timed = self.inner.timed_creations.load(Ordering::Relaxed);
        let avg_ms =
            if timed == 0 { 0.0 } else { self.inner.creation_ns.load(Ordering::Relaxed) as f64 / timed as f64 / 1e6 };
        let costs: Vec<u64> = registry
            .services
            .values()
            .map(|s| s.first_cost.load(Ordering::Relaxed))
            .filter(|c| *c != u64::MAX)
            .collect();
        let avg_cost = if costs.is_empty() { 0.0 } else { costs.iter().sum::<u64>() as f64 / costs.len() as f64 };
        let never = registry
            .services
            .values()
            .filter(|s| {
                matches!(s.lifetime, Lifetime::Lazy | Lifetime::Singleton) && s.created.load(Ordering::Relaxed) == 0
            })
            .count();
        let mut stats = json!({
            "created": self.inner.creations.load(Ordering::Relaxed),
            "cached": cached,
            "avg_creation_time": avg_ms,
            "memory_saved": never as f64 * avg_cost / crate::size::MIB as f64,
            "registered": registry.services.len(),
            "never_created": never,
            "aliases": registry.aliases.len(),
            "tags": registry.tags.len(),
        });
        if self.inner.config.debug_mode {
            let services: serde_json::Map<String, Value> = registry
                .order
                .iter()
                .filter_map(|n| registry.services.get(n))
                .map(|s| {
                    let c = s.created.load(Ordering::Relaxed);
                    let ns = s.creation_ns.load(Ordering::Relaxed);
                    (
                        s.name.to_string(),
                        json!({
                            "lifetime": s.lifetime,
                            "created": c,
                            "total_creation_time": ns as f64 / 1e6,
                            "cached": s.instance.load().is_some(),
                        }),
                    )
                })
                .collect();
            stats["services"] = Value::Object(services);
        }
        stats
    }
}

impl<T: Clone + Send + Sync + 'static> Scope<T> {
    /// Resolves `name` in this scope: scoped services once per scope, others as the container does.
    pub fn get(&self, name: &str) -> Result<T> {
        if self.inner.disposed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Closed, "this scope has been disposed"));
        }
        let c = &self.inner.container;
        // Resolve inside a frame that names this scope, so nested gets find it.
        let frame = Frame {
            container: c.inner.id,
            scope: Some(self.inner.id),
            name: "<scope>".into(),
            lifetime: Lifetime::Transient,
        };
        STACK.with(|s| s.borrow_mut().push(frame));
        SCOPES
            .with(|s| s.borrow_mut().push((self.inner.id, self.inner.clone() as Arc<dyn std::any::Any + Send + Sync>)));
        let _guard = FrameGuard { scoped: true };
        c.get(name)
    }

    /// Runs the teardowns of this scope's instances in reverse creation order. Idempotent.
    pub fn dispose(&self) -> Result<()> {
        if self.inner.disposed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let instances = std::mem::take(&mut *self.inner.instances.lock());
        let mut first_err = None;
        for (service, instance) in instances.iter().rev() {
            if let Some(td) = &service.teardown
                && let Err(e) = td(instance)
            {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn check_name(name: &str, what: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid_argument(format!("{what} name must not be empty")));
    }
    Ok(())
}

/// Follows aliases to a service name (at most as many hops as there are aliases).
fn resolve_alias<T>(registry: &Registry<T>, name: &str) -> Result<String> {
    let mut at = name;
    for _ in 0..=registry.aliases.len() {
        match registry.aliases.get(at) {
            Some(next) => at = next,
            None => return Ok(at.to_string()),
        }
    }
    Err(Error::new(ErrorKind::Cycle, format!("alias cycle starting at '{name}'")))
}

fn not_registered<T>(registry: &Registry<T>, name: &str) -> Error {
    let best = registry
        .services
        .keys()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(s, _)| *s > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k)) => {
            Error::new(ErrorKind::NotFound, format!("service '{name}' is not registered; did you mean '{k}'?"))
        }
        None => Error::new(ErrorKind::NotFound, format!("service '{name}' is not registered")),
    }
}

/// A MemoryManager cleanup: with `release_lazy_on_cleanup`, drops cached lazy instances.
impl<T: Clone + Send + Sync + 'static> Cleanup for Container<T> {
    fn cleanup(&self, _level: CleanupLevel) -> Result<()> {
        if self.inner.config.release_lazy_on_cleanup {
            self.release_lazy();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    type C = Container<Arc<String>>;

    fn container() -> C {
        Container::new(ContainerConfig::default())
    }

    fn value(s: &str) -> Factory<Arc<String>> {
        let s = s.to_string();
        Arc::new(move || Ok(Arc::new(s.clone())))
    }

    #[test]
    fn seed_basic_usage_lazy_and_dependencies() {
        let c = container();
        let db_created = Arc::new(AtomicUsize::new(0));
        let d = db_created.clone();
        c.register(
            "database",
            Lifetime::Lazy,
            Arc::new(move || {
                d.fetch_add(1, Ordering::SeqCst);
                Ok(Arc::new("db".to_string()))
            }),
            None,
            false,
        )
        .unwrap();
        let c2 = c.clone();
        c.register(
            "userService",
            Lifetime::Lazy,
            Arc::new(move || Ok(Arc::new(format!("users({})", c2.get("database")?)))),
            None,
            false,
        )
        .unwrap();
        assert_eq!(db_created.load(Ordering::SeqCst), 0, "nothing is created at registration");
        assert_eq!(*c.get("userService").unwrap(), "users(db)");
        assert_eq!(db_created.load(Ordering::SeqCst), 1);
        assert!(Arc::ptr_eq(&c.get("userService").unwrap(), &c.get("userService").unwrap()));
        let s = c.statistics();
        assert_eq!(s["created"], 2);
        assert_eq!(s["cached"], 2);
    }

    #[test]
    fn lifetimes() {
        let c = container();
        c.register("t", Lifetime::Transient, value("t"), None, false).unwrap();
        c.register("s", Lifetime::Singleton, value("s"), None, false).unwrap();
        assert!(!Arc::ptr_eq(&c.get("t").unwrap(), &c.get("t").unwrap()));
        assert!(Arc::ptr_eq(&c.get("s").unwrap(), &c.get("s").unwrap()));
        let nc: C = Container::new(ContainerConfig { cache_instances: false, ..Default::default() });
        nc.register("l", Lifetime::Lazy, value("l"), None, false).unwrap();
        nc.register("s", Lifetime::Singleton, value("s"), None, false).unwrap();
        assert!(!Arc::ptr_eq(&nc.get("l").unwrap(), &nc.get("l").unwrap()), "lazy without cache_instances");
        assert!(Arc::ptr_eq(&nc.get("s").unwrap(), &nc.get("s").unwrap()), "singletons are always cached");
    }

    #[test]
    fn scopes_hold_one_instance_each_and_dispose_in_reverse() {
        let c = container();
        let log = Arc::new(Mutex::new(Vec::new()));
        let teardown = |log: &Arc<Mutex<Vec<String>>>| -> Teardown<Arc<String>> {
            let log = log.clone();
            Arc::new(move |v: &Arc<String>| {
                log.lock().push(format!("dispose {v}"));
                Ok(())
            })
        };
        c.register("request", Lifetime::Scoped, value("request"), Some(teardown(&log)), false).unwrap();
        let c2 = c.clone();
        c.register(
            "handler",
            Lifetime::Scoped,
            Arc::new(move || Ok(Arc::new(format!("handler({})", c2.get("request")?)))),
            Some(teardown(&log)),
            false,
        )
        .unwrap();
        c.register("config", Lifetime::Singleton, value("config"), Some(teardown(&log)), false).unwrap();
        let e = c.get("request").unwrap_err();
        assert_eq!(e.message(), "service 'request' is scoped: resolve it through a scope");
        let s1 = c.create_scope().unwrap();
        let s2 = c.create_scope().unwrap();
        let h1 = s1.get("handler").unwrap();
        assert_eq!(*h1, "handler(request)");
        assert!(Arc::ptr_eq(&s1.get("request").unwrap(), &s1.get("request").unwrap()));
        assert!(!Arc::ptr_eq(&s1.get("request").unwrap(), &s2.get("request").unwrap()));
        s1.get("config").unwrap();
        s1.dispose().unwrap();
        assert_eq!(*log.lock(), vec!["dispose handler(request)", "dispose request"]);
        assert_eq!(s1.get("request").unwrap_err().kind(), ErrorKind::Closed);
        log.lock().clear();
        s2.get("request").unwrap();
        c.dispose().unwrap();
        assert_eq!(
            *log.lock(),
            vec!["dispose request", "dispose config"],
            "scopes first, then the container, newest first"
        );
        assert_eq!(c.get("config").unwrap_err().kind(), ErrorKind::Closed);
    }

    #[test]
    fn a_singleton_may_not_capture_a_scoped_service() {
        let c = container();
        c.register("request", Lifetime::Scoped, value("r"), None, false).unwrap();
        let c2 = c.clone();
        c.register("cache", Lifetime::Singleton, Arc::new(move || c2.get("request")), None, false).unwrap();
        let scope = c.create_scope().unwrap();
        let e = scope.get("cache").unwrap_err();
        assert!(e.message().contains("singleton 'cache' cannot depend on scoped service 'request'"), "{e}");
        assert!(c.statistics()["cached"] == 0);
    }

    #[test]
    fn aliases_tags_and_has() {
        let c = container();
        for n in ["emailService", "smsService", "database", "logger"] {
            c.register(n, Lifetime::Lazy, value(n), None, false).unwrap();
        }
        c.alias("db", "database").unwrap();
        c.alias("log", "logger").unwrap();
        c.alias("primary", "db").unwrap();
        assert_eq!(*c.get("db").unwrap(), "database");
        assert_eq!(*c.get("primary").unwrap(), "database");
        assert!(c.has("log") && c.has("logger") && !c.has("nothing"));
        c.tag("smsService", &["notification"]).unwrap();
        c.tag("emailService", &["notification", "communication"]).unwrap();
        c.tag("smsService", &["communication"]).unwrap();
        let got: Vec<String> = c.get_by_tag("notification").unwrap().iter().map(|v| v.to_string()).collect();
        assert_eq!(got, ["smsService", "emailService"], "in the order they were tagged");
        assert!(c.get_by_tag("none").unwrap().is_empty());
        // Alias to nothing, alias cycles, duplicates, empty names.
        c.alias("ghost", "nowhere").unwrap();
        assert_eq!(c.get("ghost").unwrap_err().message(), "alias 'ghost' points to 'nowhere', which is not registered");
        let e = c.alias("database", "db").unwrap_err();
        assert!(e.message().contains("already registered as a service"), "{e}");
        c.alias("a", "b").unwrap();
        let e = c.alias("b", "a").unwrap_err();
        assert_eq!(e.message(), "alias cycle: b -> a -> b");
        let e = c.register("database", Lifetime::Lazy, value("x"), None, false).unwrap_err();
        assert!(e.message().contains("already registered"), "{e}");
        c.register("database", Lifetime::Lazy, value("replaced"), None, true).unwrap();
        assert_eq!(*c.get("db").unwrap(), "replaced");
        assert!(c.register(" ", Lifetime::Lazy, value("x"), None, false).is_err());
        assert!(c.tag("nothing", &["x"]).unwrap_err().message().contains("not registered"));
        let e = c.get("databse").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("did you mean 'database'"), "{e}");
    }

    #[test]
    fn cycles_fail_with_their_path_and_leave_no_stale_state() {
        let c = container();
        let (ca, cb, cc) = (c.clone(), c.clone(), c.clone());
        c.register("a", Lifetime::Lazy, Arc::new(move || ca.get("b")), None, false).unwrap();
        c.register("b", Lifetime::Lazy, Arc::new(move || cb.get("c")), None, false).unwrap();
        c.register("c", Lifetime::Lazy, Arc::new(move || cc.get("a")), None, false).unwrap();
        for _ in 0..2 {
            let e = c.get("a").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Cycle);
            assert_eq!(e.message(), "circular dependency: a -> b -> c -> a");
        }
        let e = c.get("b").unwrap_err();
        assert_eq!(e.message(), "circular dependency: b -> c -> a -> b", "no false path left from the last failure");
        // Break the cycle: everything resolves, nothing stale.
        c.register("c", Lifetime::Lazy, value("c"), None, true).unwrap();
        assert_eq!(*c.get("a").unwrap(), "c");
        assert_eq!(c.statistics()["cached"], 3);
    }

    #[test]
    fn depth_guard_without_circular_detection() {
        let c: C = Container::new(ContainerConfig { circular_detection: false, ..Default::default() });
        let c2 = c.clone();
        c.register("self", Lifetime::Transient, Arc::new(move || c2.get("self")), None, false).unwrap();
        let e = c.get("self").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cycle);
        assert!(e.message().contains("deeper than 200"), "{e}");
    }

    /// Runs `f` on its own thread and fails the test if it does not finish in time, so a
    /// regression to a deadlock fails instead of hanging the test run.
    fn within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("{what}: hung (or panicked)"))
    }

    fn undetected() -> C {
        Container::new(ContainerConfig { circular_detection: false, ..Default::default() })
    }

    #[test]
    fn without_circular_detection_a_cached_service_resolving_itself_fails_instead_of_waiting() {
        for lifetime in [Lifetime::Lazy, Lifetime::Singleton] {
            let e = within("self", move || {
                let c = undetected();
                let c2 = c.clone();
                c.register("self", lifetime, Arc::new(move || c2.get("self")), None, false).unwrap();
                c.get("self").unwrap_err()
            });
            assert_eq!(e.kind(), ErrorKind::Cycle, "{lifetime:?}: {e}");
            assert_eq!(e.message(), "circular dependency: self -> self", "{lifetime:?}");
        }
    }

    #[test]
    fn without_circular_detection_a_two_service_cycle_on_one_thread_fails_with_its_path() {
        for lifetime in [Lifetime::Lazy, Lifetime::Singleton] {
            let (e, after) = within("a -> b -> a", move || {
                let c = undetected();
                let (ca, cb) = (c.clone(), c.clone());
                c.register("a", lifetime, Arc::new(move || ca.get("b")), None, false).unwrap();
                // Through a transient in between: the marker is still this thread's own.
                c.register("t", Lifetime::Transient, Arc::new(move || cb.get("a")), None, false).unwrap();
                c.alias("b", "t").unwrap();
                let e = c.get("a").unwrap_err();
                // Nothing stale: the markers are cleared and a fixed graph resolves.
                c.register("t", Lifetime::Transient, value("t"), None, true).unwrap();
                (e, c.get("a").map(|v| v.to_string()))
            });
            assert_eq!(e.kind(), ErrorKind::Cycle, "{lifetime:?}: {e}");
            assert_eq!(e.message(), "circular dependency: a -> t -> a", "{lifetime:?}");
            assert_eq!(after.unwrap(), "t");
        }
    }

    #[test]
    fn without_circular_detection_the_depth_guard_stops_long_chains_and_scoped_cycles() {
        let e = within("chain", || {
            let c = undetected();
            for i in 0..(MAX_DEPTH + 50) {
                let c2 = c.clone();
                let next = format!("s{}", i + 1);
                c.register(&format!("s{i}"), Lifetime::Lazy, Arc::new(move || c2.get(&next)), None, false).unwrap();
            }
            c.get("s0").unwrap_err()
        });
        assert_eq!(e.kind(), ErrorKind::Cycle);
        assert!(e.message().contains("deeper than 200"), "{e}");
        let e = within("scoped", || {
            let c = undetected();
            let c2 = c.clone();
            c.register("req", Lifetime::Scoped, Arc::new(move || c2.get("req")), None, false).unwrap();
            let scope = c.create_scope().unwrap();
            scope.get("req").unwrap_err()
        });
        assert_eq!(e.kind(), ErrorKind::Cycle);
        assert!(e.message().contains("deeper than 200"), "{e}");
    }

    #[test]
    fn a_panicking_factory_leaves_no_building_marker_behind() {
        let made = within("panic", || {
            let c = container();
            let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
            let f = first.clone();
            c.register(
                "s",
                Lifetime::Singleton,
                Arc::new(move || {
                    if f.swap(false, Ordering::SeqCst) {
                        panic!("boom");
                    }
                    Ok(Arc::new("s".into()))
                }),
                None,
                false,
            )
            .unwrap();
            let c2 = c.clone();
            assert!(std::thread::spawn(move || c2.get("s")).join().is_err(), "the factory panicked");
            // Another thread (and this one) must build it now, not wait for the dead build.
            c.get("s").map(|v| v.to_string())
        });
        assert_eq!(made.unwrap(), "s");
    }

    #[test]
    fn a_failing_factory_names_service_and_chain_and_caches_nothing() {
        let c = container();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        c.register(
            "db",
            Lifetime::Singleton,
            Arc::new(move || {
                if f.load(Ordering::SeqCst) {
                    Err(Error::callback("connection refused"))
                } else {
                    Ok(Arc::new("db".into()))
                }
            }),
            None,
            false,
        )
        .unwrap();
        let c2 = c.clone();
        c.register("users", Lifetime::Lazy, Arc::new(move || c2.get("db")), None, false).unwrap();
        let e = c.get("users").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Callback);
        assert_eq!(e.message(), "failed to create service 'db' (via users -> db): connection refused");
        assert_eq!(c.statistics()["cached"], 0);
        assert_eq!(c.statistics()["created"], 0);
        fail.store(false, Ordering::SeqCst);
        assert_eq!(*c.get("users").unwrap(), "db");
    }

    #[test]
    fn eight_threads_one_slow_singleton_one_creation() {
        let c = container();
        let made = Arc::new(AtomicUsize::new(0));
        let m = made.clone();
        c.register(
            "slow",
            Lifetime::Singleton,
            Arc::new(move || {
                std::thread::sleep(Duration::from_millis(50));
                m.fetch_add(1, Ordering::SeqCst);
                Ok(Arc::new("slow".into()))
            }),
            None,
            false,
        )
        .unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let got: Vec<Arc<String>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let (c, b) = (c.clone(), barrier.clone());
                    s.spawn(move || {
                        b.wait();
                        c.get("slow").unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert!(got.iter().all(|v| Arc::ptr_eq(v, &got[0])));
    }

    #[test]
    fn two_threads_resolving_a_cycle_from_both_ends_get_the_error_not_a_deadlock() {
        for _ in 0..20 {
            let c = container();
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let (ca, cb, ba, bb) = (c.clone(), c.clone(), barrier.clone(), barrier.clone());
            // Both factories start together the first time, so each thread holds one service
            // while it asks for the other.
            let (fa, fb) = (Arc::new(std::sync::Once::new()), Arc::new(std::sync::Once::new()));
            c.register(
                "a",
                Lifetime::Singleton,
                Arc::new(move || {
                    fa.call_once(|| {
                        ba.wait();
                    });
                    ca.get("b")
                }),
                None,
                false,
            )
            .unwrap();
            c.register(
                "b",
                Lifetime::Singleton,
                Arc::new(move || {
                    fb.call_once(|| {
                        bb.wait();
                    });
                    cb.get("a")
                }),
                None,
                false,
            )
            .unwrap();
            let (ra, rb) = std::thread::scope(|s| {
                let (c1, c2) = (c.clone(), c.clone());
                let ha = s.spawn(move || c1.get("a"));
                let hb = s.spawn(move || c2.get("b"));
                (ha.join().unwrap(), hb.join().unwrap())
            });
            let errs: Vec<Error> = [ra, rb].into_iter().filter_map(|r| r.err()).collect();
            assert!(!errs.is_empty());
            assert!(
                errs.iter().all(|e| e.kind() == ErrorKind::Cycle && e.message().starts_with("circular dependency: ")),
                "{errs:?}"
            );
            assert!(WAITS.lock().is_empty(), "no waits left behind");
        }
    }

    #[test]
    fn statistics_and_debug_mode() {
        let c: C = Container::new(ContainerConfig { debug_mode: true, ..Default::default() });
        c.register(
            "used",
            Lifetime::Lazy,
            Arc::new(|| {
                let big = vec![7u8; 8 << 20];
                Ok(Arc::new(format!("{}", big.iter().map(|b| *b as usize).sum::<usize>())))
            }),
            None,
            false,
        )
        .unwrap();
        c.register("never1", Lifetime::Lazy, value("x"), None, false).unwrap();
        c.register("never2", Lifetime::Singleton, value("x"), None, false).unwrap();
        c.register("t", Lifetime::Transient, value("t"), None, false).unwrap();
        c.get("used").unwrap();
        for _ in 0..3 {
            c.get("t").unwrap();
        }
        let s = c.statistics();
        assert_eq!(s["created"], 4);
        assert_eq!(s["cached"], 1);
        assert_eq!(s["never_created"], 2);
        assert!(s["avg_creation_time"].as_f64().unwrap() > 0.0);
        assert!(s["memory_saved"].as_f64().unwrap() >= 0.0);
        assert_eq!(s["services"]["t"]["created"], 3);
        assert_eq!(s["services"]["used"]["cached"], true);
        assert!(container().statistics().get("services").is_none(), "per-service stats only in debug_mode");
    }

    #[test]
    fn cleanup_releases_lazy_instances_when_configured() {
        let c: C = Container::new(ContainerConfig { release_lazy_on_cleanup: true, ..Default::default() });
        c.register("l", Lifetime::Lazy, value("l"), None, false).unwrap();
        c.register("s", Lifetime::Singleton, value("s"), None, false).unwrap();
        let (l1, s1) = (c.get("l").unwrap(), c.get("s").unwrap());
        let m = crate::MemoryManager::from_json(&Value::Null).unwrap();
        m.register_cleanup("container", 0, Arc::new(c.clone())).unwrap();
        m.force_garbage_collection().unwrap();
        assert!(!Arc::ptr_eq(&l1, &c.get("l").unwrap()), "the lazy instance was dropped and built again");
        assert!(Arc::ptr_eq(&s1, &c.get("s").unwrap()), "the singleton stays");
        let off = container();
        off.register("l", Lifetime::Lazy, value("l"), None, false).unwrap();
        let l = off.get("l").unwrap();
        off.cleanup(CleanupLevel::Emergency).unwrap();
        assert!(Arc::ptr_eq(&l, &off.get("l").unwrap()));
    }

    #[test]
    fn config_keys() {
        assert!(
            ContainerConfig::from_json(
                &json!({"auto_wire": true, "circular_detection": true, "cache_instances": true, "debug_mode": false})
            )
            .is_ok()
        );
        let e = ContainerConfig::from_json(&json!({"cache_instance": true})).unwrap_err();
        assert!(e.message().contains("did you mean 'cache_instances'"), "{e}");
        assert!(
            ContainerConfig::from_json(&json!({"debug_mode": "yes"})).unwrap_err().message().contains("'debug_mode'")
        );
    }

    #[test]
    fn the_hot_path_sees_replacements_registrations_and_dispose() {
        let c = container();
        c.register("a", Lifetime::Singleton, value("a1"), None, false).unwrap();
        assert_eq!(*c.get("a").unwrap(), "a1");
        assert_eq!(*c.get("a").unwrap(), "a1"); // from the published registry
        c.register("a", Lifetime::Singleton, value("a2"), None, true).unwrap();
        assert_eq!(*c.get("a").unwrap(), "a2", "a replaced singleton must not be served from the old registry");
        assert_eq!(*c.get("a").unwrap(), "a2");
        c.register("b", Lifetime::Singleton, value("b"), None, false).unwrap();
        assert_eq!(*c.get("b").unwrap(), "b");
        c.alias("bee", "b").unwrap();
        assert_eq!(*c.get("bee").unwrap(), "b");
        c.dispose().unwrap();
        assert_eq!(c.get("a").unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(c.get("b").unwrap_err().kind(), ErrorKind::Closed);
    }

    #[test]
    fn registering_between_gets_past_the_budget_keeps_resolving() {
        let c = container();
        // Each get after a registration publishes the registry again: n(n+1)/2 entries in all,
        // which passes FAST_PATH_BUDGET at about 362 services.
        for i in 0..400 {
            let name = format!("s{i}");
            c.register(&name, Lifetime::Singleton, value(&name), None, false).unwrap();
            assert_eq!(*c.get(&name).unwrap(), name);
            assert_eq!(*c.get("s0").unwrap(), "s0");
        }
        assert!(c.inner.fast_disabled.load(Ordering::Relaxed));
        assert!(c.inner.published.lock().1 <= FAST_PATH_BUDGET);
        c.register("s0", Lifetime::Singleton, value("new"), None, true).unwrap();
        assert_eq!(*c.get("s0").unwrap(), "new");
    }

    #[test]
    fn singletons_resolved_on_many_threads_while_others_register() {
        let c = container();
        c.register("shared", Lifetime::Singleton, value("shared"), None, false).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let c = c.clone();
                s.spawn(move || {
                    for i in 0..200 {
                        if t == 0 {
                            let n = format!("x{i}");
                            c.register(&n, Lifetime::Lazy, value(&n), None, false).unwrap();
                        }
                        assert_eq!(*c.get("shared").unwrap(), "shared");
                    }
                });
            }
        });
        assert_eq!(*c.get("x199").unwrap(), "x199");
    }
}
