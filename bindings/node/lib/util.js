'use strict'
// Small helpers shared by the binding's JS files.

/** How an argument is named in a TypeError: 'null', 'an array', or its typeof. */
function describeType (v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  return typeof v
}

/** NaN / Infinity have no JSON form: their text goes to the core, whose message names them. */
function jsonSafe (v) {
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v)
  if (Array.isArray(v)) return v.map(jsonSafe)
  if (v !== null && typeof v === 'object') {
    const out = {}
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = jsonSafe(x)
    return out
  }
  return v
}

module.exports = { describeType, jsonSafe }
