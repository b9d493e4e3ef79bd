'use strict'

// The bad-input table for Node (README "Reliability"): wrong types, null / undefined, huge
// values, empty strings, lone surrogates, use after close / dispose. Each row is one call that
// must throw the given error class with a message naming the problem; none may crash the process.

const test = require('node:test')
const assert = require('node:assert/strict')

const {
  MemoryManager,
  MemoryPool,
  LazyContainer,
  StreamingIterator,
  LazyIterator,
  ChunkedDatabaseProcessor,
  MemoryAlertingService,
  MemwardenError,
  parseSize,
  formatSize
} = require('..')

function closedPool () {
  const p = new MemoryPool({ factory: () => ({}), maxSize: 1 })
  p.close()
  return p
}

function disposedContainer () {
  const c = new LazyContainer()
  c.singleton('db', () => ({}))
  c.dispose()
  return c
}

function releasedTwice () {
  const p = new MemoryPool({ factory: () => ({}), maxSize: 1, minSize: 0 })
  const o = p.acquire()
  p.release(o)
  p.release(o)
}

// [case, call, error class, code (MemwardenError) or null, regex the message must match]
const CASES = [
  ['size: empty string', () => parseSize(''), MemwardenError, 'MW_INVALID_ARGUMENT', /invalid size ''/],
  ['size: unknown unit', () => parseSize('12X'), MemwardenError, 'MW_INVALID_ARGUMENT', /'12X'/],
  ['size: huge', () => parseSize('99999999999999999999G'), MemwardenError, 'MW_INVALID_ARGUMENT', /too large/],
  ['size: undefined', () => parseSize(undefined), TypeError, null, /must be a string, got undefined/],
  ['size: null', () => parseSize(null), TypeError, null, /must be a string, got null/],
  ['formatSize: a string', () => formatSize('5'), TypeError, null, /must be a number/],
  ['formatSize: negative', () => formatSize(-5), MemwardenError, 'MW_INVALID_ARGUMENT', /-5/],
  ['manager: unknown key', () => new MemoryManager({ warning_treshold: 0.5 }), MemwardenError, 'MW_INVALID_CONFIG', /did you mean 'warning_threshold'/],
  ['manager: wrong type', () => new MemoryManager({ warning_threshold: 'high' }), MemwardenError, 'MW_INVALID_CONFIG', /'warning_threshold'.*'high'/],
  ['manager: config is a string', () => new MemoryManager('big'), TypeError, null, /must be an object, got string/],
  ['manager: NaN threshold', () => new MemoryManager({ warning_threshold: NaN }), MemwardenError, 'MW_INVALID_CONFIG', /'warning_threshold'.*NaN/],
  ['manager: bad limit', () => new MemoryManager().setMemoryLimit('lots'), MemwardenError, 'MW_INVALID_ARGUMENT', /'lots'/],
  ['manager: limit undefined', () => new MemoryManager().setMemoryLimit(undefined), TypeError, null, /limit/],
  ['manager: negative limit', () => new MemoryManager().setMemoryLimit(-7), MemwardenError, 'MW_INVALID_ARGUMENT', /-7/],
  ['manager: callback not a function', () => new MemoryManager().onStateChange(5), TypeError, null, /must be a function/],
  ['pool: maxSize 0', () => new MemoryPool({ factory: () => ({}), maxSize: 0 }), MemwardenError, 'MW_INVALID_CONFIG', /max_?[sS]ize/],
  ['pool: minSize above maxSize', () => new MemoryPool({ factory: () => ({}), minSize: 5, maxSize: 2 }), MemwardenError, 'MW_INVALID_CONFIG', /must not exceed/],
  ['pool: no factory', () => new MemoryPool({ maxSize: 2 }), TypeError, null, /factory/],
  ['pool: acquire after close', () => closedPool().acquire(), MemwardenError, 'MW_CLOSED', /closed/],
  ['pool: foreign object released', () => new MemoryPool({ factory: () => ({}) }).release({}), MemwardenError, 'MW_INVALID_ARGUMENT', /pool/],
  ['pool: released twice', releasedTwice, MemwardenError, 'MW_INVALID_ARGUMENT', /pool/],
  ['container: unknown name', () => new LazyContainer().get('missing'), MemwardenError, 'MW_NOT_FOUND', /'missing'/],
  ['container: get(undefined)', () => new LazyContainer().get(undefined), TypeError, null, /name/],
  ['container: get after dispose', () => disposedContainer().get('db'), MemwardenError, 'MW_CLOSED', /dispose|closed/],
  ['container: factory not a function', () => new LazyContainer().singleton('x', 5), TypeError, null, /function/],
  ['iterator: source not iterable', () => new StreamingIterator(5), TypeError, null, /iterable/],
  ['iterator: chunkSize 0', () => new StreamingIterator([1], { chunkSize: 0 }), MemwardenError, 'MW_INVALID_CONFIG', /chunk_?[sS]ize/],
  ['iterator: loader not a function', () => new LazyIterator(null), TypeError, null, /function/],
  ['chunk: malformed connection', () => new ChunkedDatabaseProcessor('nowhere'), MemwardenError, 'MW_INVALID_ARGUMENT', /malformed connection string 'nowhere'/],
  ['chunk: lone surrogate in connection', () => new ChunkedDatabaseProcessor('sqlite:/tmp/\ud800.db', { chunkSize: 0 }), MemwardenError, 'MW_INVALID_CONFIG', /chunk_?[sS]ize/],
  ['alert: unknown channel', () => new MemoryAlertingService({ channels: { pager: {} } }), MemwardenError, 'MW_INVALID_CONFIG', /pager/],
  ['alert: bad level', () => new MemoryAlertingService().sendAlert('x', 'loud'), MemwardenError, 'MW_INVALID_ARGUMENT', /loud/]
]

for (const [name, call, cls, code, pattern] of CASES) {
  test(`bad input: ${name}`, () => {
    let thrown = null
    try {
      call()
    } catch (e) {
      thrown = e
    }
    assert.ok(thrown !== null, `${name}: nothing was thrown`)
    assert.ok(thrown instanceof cls, `${name}: got ${thrown && thrown.name}: ${thrown && thrown.message}`)
    if (code !== null) assert.equal(thrown.code, code, `${name}: ${thrown.message}`)
    assert.match(thrown.message, pattern, name)
  })
}
