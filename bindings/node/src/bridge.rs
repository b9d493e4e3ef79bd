//! Calls from the core into JavaScript, for the iterators and the chunk processor.
//!
//! Two ways a core call reaches JS. Synchronously ([`Port::direct`]): the core runs on the JS
//! thread inside a native call and calls the `dispatch` function of `lib/index.js` directly.
//! Asynchronously ([`spawn_step`]): the core runs on a worker thread of its own; each request
//! travels to the JS thread through a thread-safe function, `dispatch` gets a `reply` function
//! as its last argument and calls it once its (possibly Promise-returning) work is done; the
//! worker waits for that reply, so the event loop stays free while the core waits. When the
//! step ends, its Promise settles on the JS thread.
//!
//! `dispatch(kind, a, b, c, reply?)` kinds: 0 pull a chunk (`a` = max items), 1 load a page
//! (`a` = offset or after-key, `b` = limit), 2 a batch of rows (`a` = the rows), 3 progress
//! (`a` = processed, `b` = total, `c` = stats or undefined), 4 a failed chunk (`a` = the
//! error, `b` = the chunk info) -> continue?. Pull and load return `[slot, length]` or
//! `[slot, length, key]`: the items stay in a table of `lib/index.js`, the core only sees ids.
//!
//! The exception a JS callback threw is kept (as a strong reference) in the port, so the
//! original object can be rethrown when the core gives up; a later successful callback clears it.

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::ThreadId;

use memwarden_core::chunk::{Batch, ChunkInfo, Progress, RowFormat, Value as CellValue};
use memwarden_core::{Error as CoreError, ErrorKind, Key};
use napi::bindgen_prelude::*;
use napi::{Env, sys};
use parking_lot::Mutex;

use crate::{CoreResult, core_error_value, describe_exception, js_string};

/// What the core asks of JS.
pub(crate) enum Request {
    Pull {
        max: usize,
    },
    Load {
        offset: Option<u64>,
        after: Option<Key>,
        limit: usize,
    },
    /// Valid while the requesting thread waits for the reply.
    Batch(*const Batch),
    Progress(*const Progress),
    Failed {
        error: CoreError,
        chunk: ChunkInfo,
    },
    /// Filter `index` on the item with this id.
    Filter {
        index: usize,
        id: u64,
    },
}

// Safety: the raw pointers are only read while the thread that owns the pointee blocks on the
// reply (see `Port::request`).
unsafe impl Send for Request {}

impl Request {
    fn kind(&self) -> u32 {
        match self {
            Request::Pull { .. } => 0,
            Request::Load { .. } => 1,
            Request::Batch(_) => 2,
            Request::Progress(_) => 3,
            Request::Failed { .. } => 4,
            Request::Filter { .. } => 5,
        }
    }
}

/// What JS answered.
pub(crate) enum Reply {
    Chunk { slot: u32, len: usize, key: Option<Key> },
    Bool(bool),
    Unit,
}

/// Options that shape the JS values of requests.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub row_format: RowFormat,
    pub progress_stats: bool,
}

enum Mode {
    Idle,
    Direct { env: usize, func: usize, thread: ThreadId },
    Tsfn { tsfn: usize, rx: Receiver<CoreResult<Reply>> },
}

/// Where a core call's requests go; shared by the native object and the core's callbacks.
pub(crate) struct Port {
    mode: Mutex<Mode>,
    /// The last exception a JS callback threw (a strong `napi_ref`), with its env.
    thrown: Mutex<Option<(usize, usize)>>,
    shape: Mutex<Shape>,
}

fn ok(st: sys::napi_status) -> bool {
    st == sys::Status::napi_ok
}

impl Port {
    pub(crate) fn new(shape: Shape) -> Arc<Port> {
        Arc::new(Port { mode: Mutex::new(Mode::Idle), thrown: Mutex::new(None), shape: Mutex::new(shape) })
    }

    pub(crate) fn set_shape(&self, shape: Shape) {
        *self.shape.lock() = shape;
    }

    /// Runs `f` with requests going straight to `dispatch` on this (the JS) thread.
    pub(crate) fn direct<R>(&self, env: &Env, dispatch: &Unknown, f: impl FnOnce() -> R) -> R {
        *self.mode.lock() = Mode::Direct {
            env: env.raw() as usize,
            func: dispatch.raw() as usize,
            thread: std::thread::current().id(),
        };
        let r = f();
        *self.mode.lock() = Mode::Idle;
        r
    }

    /// Keeps `exc` as the last thrown exception. JS thread only.
    fn set_thrown(&self, env: sys::napi_env, exc: sys::napi_value) {
        let mut r = ptr::null_mut();
        let mut holder = ptr::null_mut();
        // Safety: on the JS thread of `env`; `exc` is a live value. It is held in a one-element
        // array because Node before 22 cannot reference primitives (`throw 'text'`).
        unsafe {
            sys::napi_create_array_with_length(env, 1, &mut holder);
            sys::napi_set_element(env, holder, 0, exc);
            sys::napi_create_reference(env, holder, 1, &mut r)
        };
        if let Some((e, old)) = self.thrown.lock().replace((env as usize, r as usize)) {
            // Safety: a reference this port created in env `e`, on this same thread.
            unsafe { sys::napi_delete_reference(e as sys::napi_env, old as sys::napi_ref) };
        }
    }

    /// Forgets the kept exception (a callback succeeded after it). JS thread only.
    pub(crate) fn clear_thrown(&self) {
        if let Some((e, old)) = self.thrown.lock().take() {
            // Safety: as in `set_thrown`.
            unsafe { sys::napi_delete_reference(e as sys::napi_env, old as sys::napi_ref) };
        }
    }

    /// The kept exception's value (still kept). JS thread only.
    fn thrown_value(&self, env: sys::napi_env) -> Option<sys::napi_value> {
        let (_, r) = (*self.thrown.lock())?;
        let mut holder = ptr::null_mut();
        // Safety: a strong reference of this env, to the holder array made by `set_thrown`.
        unsafe { sys::napi_get_reference_value(env, r as sys::napi_ref, &mut holder) };
        (!holder.is_null()).then(|| get_element(env, holder, 0))
    }

    /// The JS value to throw for `e`: the kept original exception when `e` is a callback
    /// error and one is kept, else a MemwardenError. Clears the kept exception.
    pub(crate) fn error_value(&self, env: sys::napi_env, e: &CoreError) -> sys::napi_value {
        let v = match e.kind() {
            ErrorKind::Callback => self.thrown_value(env),
            _ => None,
        };
        let v = v.unwrap_or_else(|| core_error_value(env, e));
        self.clear_thrown();
        v
    }

    /// Sends `req` to JS and waits for its reply.
    pub(crate) fn request(&self, req: Request) -> CoreResult<Reply> {
        let mode = self.mode.lock();
        match &*mode {
            Mode::Idle => Err(CoreError::callback("no JavaScript call is in progress for this iterator")),
            Mode::Direct { env, func, thread } => {
                if std::thread::current().id() != *thread {
                    return Err(CoreError::callback("a JavaScript callback was called off the JS thread; refused"));
                }
                let (env, func) = (*env as sys::napi_env, *func as sys::napi_value);
                drop(mode);
                let shape = *self.shape.lock();
                let mut scope = ptr::null_mut();
                // Safety: on the JS thread inside the native call that set this mode; values
                // made here live until the scope closes, the kept exception is a reference.
                unsafe { sys::napi_open_handle_scope(env, &mut scope) };
                let r = self.call_direct(env, func, &req, shape);
                // Safety: the scope opened above.
                unsafe { sys::napi_close_handle_scope(env, scope) };
                r
            }
            Mode::Tsfn { tsfn, rx } => {
                let data = Box::into_raw(Box::new(Msg::Request(req)));
                // Safety: the thread-safe function lives until this step releases it, after
                // the work (and so this call) ended.
                let st = unsafe {
                    sys::napi_call_threadsafe_function(
                        *tsfn as sys::napi_threadsafe_function,
                        data.cast(),
                        sys::ThreadsafeFunctionCallMode::blocking,
                    )
                };
                if !ok(st) {
                    // Safety: not queued, so still ours.
                    drop(unsafe { Box::from_raw(data) });
                    return Err(CoreError::callback("the JavaScript side is gone (thread-safe function closed)"));
                }
                rx.recv().unwrap_or_else(|_| Err(CoreError::callback("the JavaScript side is gone")))
            }
        }
    }

    fn call_direct(&self, env: sys::napi_env, func: sys::napi_value, req: &Request, shape: Shape) -> CoreResult<Reply> {
        let argv = self.request_args(env, req, shape);
        let (mut recv, mut result) = (ptr::null_mut(), ptr::null_mut());
        // Safety: plain call on the JS thread.
        let st = unsafe {
            sys::napi_get_undefined(env, &mut recv);
            sys::napi_call_function(env, recv, func, argv.len(), argv.as_ptr(), &mut result)
        };
        if ok(st) {
            let r = parse_reply(env, req.kind(), result);
            // The error callback's answer keeps the exception it was asked about.
            if r.is_ok() && req.kind() != 4 {
                self.clear_thrown();
            }
            return r;
        }
        Err(self.caught(env))
    }

    /// Takes the pending exception, keeps it, and returns the core's callback error.
    fn caught(&self, env: sys::napi_env) -> CoreError {
        let mut pending = false;
        let mut exc = ptr::null_mut();
        // Safety: on the JS thread.
        unsafe {
            sys::napi_is_exception_pending(env, &mut pending);
            if !pending {
                return CoreError::callback("calling the JavaScript callback failed");
            }
            sys::napi_get_and_clear_last_exception(env, &mut exc);
        }
        let message = describe_exception(env, exc);
        self.set_thrown(env, exc);
        CoreError::callback(message)
    }

    /// `[kind, a, b, c]` for `dispatch`.
    fn request_args(&self, env: sys::napi_env, req: &Request, shape: Shape) -> Vec<sys::napi_value> {
        let mut args = vec![num(env, f64::from(req.kind()))];
        match req {
            Request::Pull { max } => args.push(num(env, *max as f64)),
            Request::Load { offset, after, limit } => {
                args.push(match (offset, after) {
                    (Some(o), _) => num(env, *o as f64),
                    (None, Some(k)) => key_value(env, k),
                    (None, None) => null(env),
                });
                args.push(num(env, *limit as f64));
            }
            // Safety: the batch outlives the request (see `Request`).
            Request::Batch(b) => args.push(rows_value(env, unsafe { &**b }, shape.row_format)),
            Request::Progress(p) => {
                // Safety: as above.
                let p = unsafe { &**p };
                args.push(num(env, p.processed as f64));
                args.push(num(env, p.total as f64));
                if shape.progress_stats {
                    args.push(json_value(env, p.to_json()));
                }
            }
            Request::Failed { error, chunk } => {
                let e = match error.kind() {
                    ErrorKind::Callback => self.thrown_value(env),
                    _ => None,
                };
                args.push(e.unwrap_or_else(|| core_error_value(env, error)));
                args.push(json_value(env, chunk.to_json()));
            }
            Request::Filter { index, id } => {
                args.push(num(env, *index as f64));
                args.push(num(env, *id as f64));
            }
        }
        args
    }
}

fn num(env: sys::napi_env, v: f64) -> sys::napi_value {
    let mut out = ptr::null_mut();
    // Safety: value creation on the JS thread.
    unsafe { sys::napi_create_double(env, v, &mut out) };
    out
}

fn null(env: sys::napi_env) -> sys::napi_value {
    let mut out = ptr::null_mut();
    // Safety: as above.
    unsafe { sys::napi_get_null(env, &mut out) };
    out
}

fn key_value(env: sys::napi_env, k: &Key) -> sys::napi_value {
    match k {
        Key::Int(i) => num(env, *i as f64),
        Key::Text(s) => js_string(env, s),
    }
}

pub(crate) fn json_value(env: sys::napi_env, v: serde_json::Value) -> sys::napi_value {
    // Safety: conversion on the JS thread.
    unsafe { serde_json::Value::to_napi_value(env, v) }.unwrap_or_else(|_| null(env))
}

/// Integers beyond 2^53 become BigInts so no digit is lost.
const SAFE_INT: i64 = 9_007_199_254_740_991;

fn cell_value(env: sys::napi_env, v: &CellValue) -> sys::napi_value {
    let mut out = ptr::null_mut();
    // Safety: value creation on the JS thread.
    unsafe {
        match v {
            CellValue::Null => sys::napi_get_null(env, &mut out),
            CellValue::Bool(b) => sys::napi_get_boolean(env, *b, &mut out),
            CellValue::Int(i) if (-SAFE_INT..=SAFE_INT).contains(i) => {
                sys::napi_create_double(env, *i as f64, &mut out)
            }
            CellValue::Int(i) => sys::napi_create_bigint_int64(env, *i, &mut out),
            CellValue::Real(r) => sys::napi_create_double(env, *r, &mut out),
            CellValue::Text(s) => sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut out),
            CellValue::Blob(b) => {
                let mut data = ptr::null_mut();
                sys::napi_create_buffer_copy(env, b.len(), b.as_ptr().cast(), &mut data, &mut out)
            }
        };
    }
    out
}

/// The batch's rows as an array of objects (column name -> value) or of arrays. Column-name
/// strings are made once per batch.
pub(crate) fn rows_value(env: sys::napi_env, b: &Batch, format: RowFormat) -> sys::napi_value {
    let mut arr = ptr::null_mut();
    let w = b.columns.len();
    // Safety: value creation on the JS thread; every value belongs to `env`.
    unsafe {
        sys::napi_create_array_with_length(env, b.rows, &mut arr);
        let keys: Vec<sys::napi_value> = match format {
            RowFormat::Dict => b.columns.iter().map(|c| js_string(env, c)).collect(),
            RowFormat::Tuple => Vec::new(),
        };
        for (i, row) in b.iter_rows().enumerate() {
            let mut obj = ptr::null_mut();
            match format {
                RowFormat::Dict => {
                    sys::napi_create_object(env, &mut obj);
                    for (k, v) in keys.iter().zip(row) {
                        sys::napi_set_property(env, obj, *k, cell_value(env, v));
                    }
                }
                RowFormat::Tuple => {
                    sys::napi_create_array_with_length(env, w, &mut obj);
                    for (j, v) in row.iter().enumerate() {
                        sys::napi_set_element(env, obj, j as u32, cell_value(env, v));
                    }
                }
            }
            sys::napi_set_element(env, arr, i as u32, obj);
        }
    }
    arr
}

fn get_element(env: sys::napi_env, arr: sys::napi_value, i: u32) -> sys::napi_value {
    let mut v = ptr::null_mut();
    // Safety: on the JS thread.
    unsafe { sys::napi_get_element(env, arr, i, &mut v) };
    v
}

fn as_f64(env: sys::napi_env, v: sys::napi_value) -> Option<f64> {
    let mut d = 0.0;
    // Safety: on the JS thread.
    ok(unsafe { sys::napi_get_value_double(env, v, &mut d) }).then_some(d)
}

fn js_key(env: sys::napi_env, v: sys::napi_value) -> CoreResult<Key> {
    let mut ty = 0;
    // Safety: on the JS thread.
    unsafe { sys::napi_typeof(env, v, &mut ty) };
    if ty == sys::ValueType::napi_number {
        let d = as_f64(env, v).unwrap_or(f64::NAN);
        if d.fract() == 0.0 && d.abs() <= SAFE_INT as f64 {
            return Ok(Key::Int(d as i64));
        }
    } else if ty == sys::ValueType::napi_string {
        // Safety: a string value.
        if let Ok(s) = unsafe { String::from_napi_value(env, v) } {
            return Ok(Key::Text(s));
        }
    } else if ty == sys::ValueType::napi_bigint {
        let (mut i, mut lossless) = (0i64, false);
        // Safety: a BigInt value.
        unsafe { sys::napi_get_value_bigint_int64(env, v, &mut i, &mut lossless) };
        if lossless {
            return Ok(Key::Int(i));
        }
    }
    Err(CoreError::invalid_argument(
        "keyset mode: an item's key must be an integer (a safe integer Number or a BigInt) or a string",
    ))
}

/// Reads `dispatch`'s answer to a request of `kind`.
fn parse_reply(env: sys::napi_env, kind: u32, v: sys::napi_value) -> CoreResult<Reply> {
    match kind {
        0 | 1 => {
            let bad = || CoreError::callback("internal: the JS layer returned no [slot, length] pair");
            let slot = as_f64(env, get_element(env, v, 0)).ok_or_else(bad)?;
            let len = as_f64(env, get_element(env, v, 1)).ok_or_else(bad)?;
            let mut n = 0u32;
            // Safety: on the JS thread.
            unsafe { sys::napi_get_array_length(env, v, &mut n) };
            let key = if n > 2 && len > 0.0 { Some(js_key(env, get_element(env, v, 2))?) } else { None };
            Ok(Reply::Chunk { slot: slot as u32, len: len as usize, key })
        }
        4 | 5 => {
            let mut b = false;
            let mut coerced = ptr::null_mut();
            // Safety: on the JS thread.
            unsafe {
                sys::napi_coerce_to_bool(env, v, &mut coerced);
                sys::napi_get_value_bool(env, coerced, &mut b);
            }
            Ok(Reply::Bool(b))
        }
        _ => Ok(Reply::Unit),
    }
}

// ---- asynchronous steps --------------------------------------------------------------

/// Turns a step's result into the value its Promise resolves with (Ok) or rejects with (Err).
pub(crate) type Settle =
    Box<dyn FnOnce(sys::napi_env, &Port) -> std::result::Result<sys::napi_value, sys::napi_value> + Send>;

enum Msg {
    Request(Request),
    Done(Settle),
}

/// The JS-thread side of one step (the thread-safe function's context).
struct StepCtx {
    port: Arc<Port>,
    deferred: sys::napi_deferred,
    reply_fn: sys::napi_ref,
    reply: *const ReplyData,
}

struct ReplyData {
    port: Arc<Port>,
    tx: SyncSender<CoreResult<Reply>>,
    pending: std::cell::Cell<u32>,
}

struct SendPtr(usize);

/// Runs `work` on a new thread with requests routed through `dispatch`; returns a Promise
/// that settles with what `work`'s [`Settle`] makes of its result.
pub(crate) fn spawn_step(
    env: &Env,
    dispatch: &Unknown,
    port: Arc<Port>,
    work: impl FnOnce() -> Settle + Send + 'static,
) -> Result<sys::napi_value> {
    let raw = env.raw();
    let (tx, rx) = sync_channel::<CoreResult<Reply>>(1);
    let reply = Box::into_raw(Box::new(ReplyData { port: port.clone(), tx, pending: std::cell::Cell::new(0) }));
    let mut promise = ptr::null_mut();
    let mut deferred = ptr::null_mut();
    let mut reply_fn = ptr::null_mut();
    let mut reply_ref = ptr::null_mut();
    let mut tsfn = ptr::null_mut();
    // Safety: on the JS thread of `env`. `reply` is freed by the function's finalizer; the
    // context by the thread-safe function's finalizer (both on the JS thread).
    unsafe {
        check_status!(sys::napi_create_promise(raw, &mut deferred, &mut promise))?;
        check_status!(sys::napi_create_function(
            raw,
            c"reply".as_ptr(),
            5,
            Some(reply_cb),
            reply.cast(),
            &mut reply_fn
        ))?;
        check_status!(sys::napi_add_finalizer(
            raw,
            reply_fn,
            reply.cast(),
            Some(drop_reply),
            ptr::null_mut(),
            ptr::null_mut()
        ))?;
        check_status!(sys::napi_create_reference(raw, reply_fn, 1, &mut reply_ref))?;
        let ctx = Box::into_raw(Box::new(StepCtx { port: port.clone(), deferred, reply_fn: reply_ref, reply }));
        let name = js_string(raw, "memwarden");
        let st = sys::napi_create_threadsafe_function(
            raw,
            dispatch.raw(),
            ptr::null_mut(),
            name,
            0,
            1,
            ctx.cast(),
            Some(finalize_ctx),
            ctx.cast(),
            Some(call_js),
            &mut tsfn,
        );
        if !ok(st) {
            drop(Box::from_raw(ctx));
            return Err(napi::Error::new(Status::GenericFailure, "cannot create a thread-safe function"));
        }
    }
    *port.mode.lock() = Mode::Tsfn { tsfn: tsfn as usize, rx };
    let t = SendPtr(tsfn as usize);
    let spawned = std::thread::Builder::new().name("memwarden-step".into()).spawn(move || {
        let t = t;
        let settle = work();
        *port.mode.lock() = Mode::Idle;
        let data = Box::into_raw(Box::new(Msg::Done(settle)));
        let tsfn = t.0 as sys::napi_threadsafe_function;
        // Safety: the function is alive until released just below.
        unsafe {
            if !ok(sys::napi_call_threadsafe_function(tsfn, data.cast(), sys::ThreadsafeFunctionCallMode::blocking)) {
                drop(Box::from_raw(data));
            }
            sys::napi_release_threadsafe_function(tsfn, sys::ThreadsafeFunctionReleaseMode::release);
        }
    });
    if let Err(e) = spawned {
        // Safety: the worker never started; release the function it would have.
        unsafe { sys::napi_release_threadsafe_function(tsfn, sys::ThreadsafeFunctionReleaseMode::abort) };
        return Err(napi::Error::new(Status::GenericFailure, format!("cannot start a worker thread: {e}")));
    }
    Ok(promise)
}

unsafe extern "C" fn call_js(env: sys::napi_env, func: sys::napi_value, context: *mut c_void, data: *mut c_void) {
    // Safety: `data` is a `Msg` boxed by the sender; `context` the step's `StepCtx`.
    let msg = unsafe { Box::from_raw(data as *mut Msg) };
    if env.is_null() {
        // Torn down: dropping the message (and, at finalize, the reply sender) ends the wait.
        return;
    }
    let ctx = unsafe { &*(context as *const StepCtx) };
    match *msg {
        Msg::Request(req) => {
            let shape = *ctx.port.shape.lock();
            let mut args = ctx.port.request_args(env, &req, shape);
            while args.len() < 4 {
                args.push(undefined(env));
            }
            let mut reply = ptr::null_mut();
            // Safety: on the JS thread; the reference is alive while the context is.
            unsafe {
                (*ctx.reply).pending.set(req.kind());
                sys::napi_get_reference_value(env, ctx.reply_fn, &mut reply);
            }
            args.push(reply);
            let (mut recv, mut result) = (ptr::null_mut(), ptr::null_mut());
            // Safety: plain call on the JS thread.
            let st = unsafe {
                sys::napi_get_undefined(env, &mut recv);
                sys::napi_call_function(env, recv, func, args.len(), args.as_ptr(), &mut result)
            };
            if !ok(st) {
                // `dispatch` itself threw (it normally reports through `reply`).
                let e = ctx.port.caught(env);
                // Safety: as above.
                let _ = unsafe { (*ctx.reply).tx.try_send(Err(e)) };
            }
        }
        Msg::Done(settle) => {
            let (value, resolved) = match settle(env, &ctx.port) {
                Ok(v) => (v, true),
                Err(v) => (v, false),
            };
            // Safety: the deferred is settled exactly once, here.
            unsafe {
                if resolved {
                    sys::napi_resolve_deferred(env, ctx.deferred, value);
                } else {
                    sys::napi_reject_deferred(env, ctx.deferred, value);
                }
            }
        }
    }
}

fn undefined(env: sys::napi_env) -> sys::napi_value {
    let mut out = ptr::null_mut();
    // Safety: on the JS thread.
    unsafe { sys::napi_get_undefined(env, &mut out) };
    out
}

unsafe extern "C" fn finalize_ctx(env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // Safety: the context boxed in `spawn_step`; finalized once.
    let ctx = unsafe { Box::from_raw(data as *mut StepCtx) };
    if !env.is_null() {
        // Safety: the strong reference to the reply function, in this env.
        unsafe { sys::napi_delete_reference(env, ctx.reply_fn) };
    }
}

unsafe extern "C" fn drop_reply(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // Safety: the `ReplyData` boxed in `spawn_step`, owned by the reply function.
    drop(unsafe { Box::from_raw(data as *mut ReplyData) });
}

/// `reply(error, result)`: called by `dispatch` once a request's work is done.
unsafe extern "C" fn reply_cb(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut argc = 2usize;
    let mut argv = [ptr::null_mut(); 2];
    let mut data = ptr::null_mut();
    // Safety: the callback of the reply function; its data is a live `ReplyData`.
    let rd = unsafe {
        sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data);
        &*(data as *const ReplyData)
    };
    let mut ty = 0;
    // Safety: on the JS thread; missing arguments are `undefined`.
    unsafe { sys::napi_typeof(env, argv[0], &mut ty) };
    let answer = if argc >= 1 && ty != sys::ValueType::napi_undefined && ty != sys::ValueType::napi_null {
        let message = describe_exception(env, argv[0]);
        rd.port.set_thrown(env, argv[0]);
        Err(CoreError::callback(message))
    } else {
        let r = parse_reply(env, rd.pending.get(), argv[1]);
        if r.is_ok() && rd.pending.get() != 4 {
            rd.port.clear_thrown();
        }
        r
    };
    let _ = rd.tx.try_send(answer);
    ptr::null_mut()
}
