//! `NativeStreamProcessor`: the core's StreamProcessor driven from the JS event loop.
//!
//! `lib/stream.js` runs the loop: it asks [`NativeStreamProcessor::admit`] before reading a
//! chunk (null = pause reading: backpressure), runs the async handler, and reports back with
//! `finish` or `cancel`. Tickets stay here, by index, so JS only handles numbers. Compression
//! runs on the libuv thread pool (`compress` returns a Promise).

use std::collections::HashMap;
use std::sync::Arc;

use memwarden_core::{ChunkTicket, StreamProcessor};
use napi::bindgen_prelude::*;
use napi::{Env, Task};
use napi_derive::napi;
use parking_lot::Mutex;
use serde_json::Value;

use crate::tracker::NativeResourceTracker;
use crate::{guarded, invalid_argument, normalize_numbers};

/// A chunk that may be read now.
#[napi(object)]
pub struct StreamTicket {
    /// 0, 1, 2, ... in reading order.
    pub index: f64,
    /// Byte offset of the chunk in the input.
    pub offset: f64,
    /// Bytes admitted.
    pub size: f64,
}

/// The native half of `StreamProcessor` (use the class from `lib/index.js`).
#[napi(js_name = "NativeStreamProcessor")]
pub struct NativeStreamProcessor {
    inner: Arc<StreamProcessor>,
    tickets: Mutex<HashMap<u64, ChunkTicket>>,
}

fn whole(env: &Env, method: &str, arg: &str, v: f64) -> Result<u64> {
    if !v.is_finite() || v < 0.0 || v.fract() != 0.0 {
        return Err(invalid_argument(env, format!("{method}(): '{arg}' must be a whole number >= 0, got {v}")));
    }
    Ok(v as u64)
}

/// Gzip of one chunk, off the JS thread.
pub struct Compress {
    sp: Arc<StreamProcessor>,
    data: Vec<u8>,
}

impl Task for Compress {
    type Output = Vec<u8>;
    type JsValue = Buffer;

    fn compute(&mut self) -> Result<Self::Output> {
        self.sp.compress(&self.data).map_err(|e| napi::Error::new(Status::GenericFailure, e.message().to_owned()))
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(output.into())
    }
}

#[napi]
impl NativeStreamProcessor {
    /// `config`: `chunkSize`, `concurrentStreams`, `compressionEnabled`, `maxMemoryUsage`,
    /// `thresholds`, `cleanupInterval` (snake_case accepted). With `tracker` (the native half of
    /// a `ResourceTracker`) the chunks are tracked there and the tracker's keys are refused.
    #[napi(constructor)]
    pub fn new(env: Env, config: Option<Value>, tracker: Option<&NativeResourceTracker>) -> Result<Self> {
        let cfg = normalize_numbers(config.unwrap_or(Value::Null));
        let inner = guarded(&env, || match tracker {
            Some(t) => StreamProcessor::from_json_with_tracker(&cfg, t.inner.clone()),
            None => StreamProcessor::from_json(&cfg),
        })?;
        Ok(NativeStreamProcessor { inner: Arc::new(inner), tickets: Mutex::new(HashMap::new()) })
    }

    #[napi(getter)]
    pub fn chunk_size(&self) -> f64 {
        self.inner.config().chunk_size as f64
    }

    #[napi(getter)]
    pub fn concurrent_streams(&self) -> u32 {
        self.inner.config().concurrent_streams as u32
    }

    #[napi(getter)]
    pub fn compression_enabled(&self) -> bool {
        self.inner.config().compression_enabled
    }

    /// Starts a run (index, offset and counters from 0). Fails while chunks are in flight.
    #[napi]
    pub fn begin(&self, env: Env) -> Result<()> {
        guarded(&env, || self.inner.begin())
    }

    /// A ticket when a chunk of `size` bytes may be read now, `null` when reading must pause.
    #[napi]
    pub fn admit(&self, env: Env, size: f64) -> Result<Option<StreamTicket>> {
        let size = whole(&env, "admit", "size", size)?;
        let t = guarded(&env, || self.inner.admit(size))?;
        Ok(t.map(|t| {
            self.tickets.lock().insert(t.index, t);
            StreamTicket { index: t.index as f64, offset: t.offset as f64, size: t.size as f64 }
        }))
    }

    fn take(&self, env: &Env, method: &str, index: f64) -> Result<ChunkTicket> {
        let i = whole(env, method, "index", index)?;
        self.tickets
            .lock()
            .remove(&i)
            .ok_or_else(|| invalid_argument(env, format!("{method}(): chunk {i} is not in flight")))
    }

    /// The handler of chunk `index` is done with `bytes` of input (`compressedBytes` of gzip, 0
    /// when not compressed) in `processingMs`; returns the chunk's `performance` event.
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn finish(&self, env: Env, index: f64, bytes: f64, compressed_bytes: f64, processing_ms: f64) -> Result<Value> {
        let bytes = whole(&env, "finish", "bytes", bytes)?;
        let compressed = whole(&env, "finish", "compressedBytes", compressed_bytes)?;
        let t = self.take(&env, "finish", index)?;
        let r = self.inner.finish_compressed(t, bytes, (compressed > 0).then_some(compressed), processing_ms);
        if r.is_err() {
            // Wrong figures: the chunk stays in flight, to be finished properly or cancelled.
            self.tickets.lock().insert(t.index, t);
        }
        guarded(&env, || r)
    }

    /// Gives chunk `index` back uncounted; `counted` false when it only found the end of input.
    #[napi]
    pub fn cancel(&self, env: Env, index: f64, counted: bool) -> Result<()> {
        let t = self.take(&env, "cancel", index)?;
        guarded(&env, || if counted { self.inner.cancel(t) } else { self.inner.unused(t) })
    }

    /// Ends the run; returns the summary `performance` event (`final: true`).
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn end(&self, env: Env) -> Result<Value> {
        guarded(&env, || self.inner.end())
    }

    /// Gzip (one member per call), computed on the thread pool.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn compress(&self, data: Buffer) -> AsyncTask<Compress> {
        AsyncTask::new(Compress { sp: self.inner.clone(), data: data.to_vec() })
    }

    /// Config, the run's counters and `tracker` statistics.
    #[napi(ts_return_type = "Record<string, any>")]
    pub fn stats(&self) -> Value {
        self.inner.stats()
    }

    /// `performance` events and the tracker's `memoryWarning` / `memoryCritical` since the last poll.
    #[napi(ts_return_type = "Array<Record<string, any>>")]
    pub fn poll_events(&self) -> Value {
        Value::Array(self.inner.poll_events())
    }
}
