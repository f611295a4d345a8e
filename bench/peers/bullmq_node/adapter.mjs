// bench.compare adapter for BullMQ on Node, speaking the protocol of bench/peers/_proto.py:
//
//   node bench/peers/bullmq_node/adapter.mjs <role> --url URL --queue NAME [--n N]
//       [--concurrency C] [--sleep-ms MS] [--rate R] [--delay-s S] [--counter PATH]
//       [--record-latency] [--batch B]
//
// Concurrency model: one Node process, the event loop (Worker({concurrency: C})
// with an async processor); sleeping tasks await a timer. Client: ioredis (an
// optional peer of bullmq, pinned in package.json); unix sockets: yes.
// Results: every job is added with removeOnComplete: true (no completed jobs or
// return values kept); failed jobs are kept as by default. Bulk API:
// Queue.addBulk. Delays: the `delay` job option (ms).
// Every role prints one final line `RESULT <json>` on stdout; errors go to
// stderr with a non-zero exit code.

import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, Worker } from 'bullmq';

const ROLES = ['enqueue-single', 'enqueue-bulk', 'fill', 'work', 'produce'];
const BULK_BATCH = 1000;
const PAD_LEN = 78; // same shape and size as _proto.payload
const WATCH_INTERVAL_MS = 5;
const NAME = 'noop';

// --- arguments ---------------------------------------------------------------------------

function parseArgs(argv) {
  const args = {
    role: null,
    url: null,
    queue: null,
    n: 1000,
    concurrency: 1,
    sleepMs: 0,
    rate: 200,
    delayS: 0,
    counter: null,
    recordLatency: false,
    batch: BULK_BATCH,
  };
  const numeric = {
    '--n': 'n',
    '--concurrency': 'concurrency',
    '--sleep-ms': 'sleepMs',
    '--rate': 'rate',
    '--delay-s': 'delayS',
    '--batch': 'batch',
  };
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? a.split(/=(.*)/s) : [a, undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      if (k + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++k];
    };
    if (flag === '--record-latency') args.recordLatency = true;
    else if (flag === '--url') args.url = value();
    else if (flag === '--queue') args.queue = value();
    else if (flag === '--counter') args.counter = value();
    else if (flag in numeric) {
      const v = Number(value());
      if (!Number.isFinite(v)) throw new Error(`${flag} needs a number`);
      args[numeric[flag]] = v;
    } else if (!flag.startsWith('--') && args.role === null) args.role = flag;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!ROLES.includes(args.role)) throw new Error(`role must be one of ${ROLES.join(', ')}`);
  if (!args.url || !args.queue) throw new Error('--url and --queue are required');
  if (args.n < 0 || args.concurrency < 1 || args.batch < 1) {
    throw new Error('--n must be >= 0, --concurrency and --batch >= 1');
  }
  return args;
}

// `redis://host:port/db` or `unix:///path?db=N` -> ioredis options.
function connectionOptions(url) {
  const u = new URL(url);
  const common = { maxRetriesPerRequest: null }; // what BullMQ wants for workers
  if (u.protocol === 'unix:') {
    return { ...common, path: decodeURIComponent(u.pathname), db: Number(u.searchParams.get('db') || 0) };
  }
  if (!['redis:', 'rediss:', 'valkey:'].includes(u.protocol)) {
    throw new Error(`unsupported URL scheme in ${url}`);
  }
  const db = Number(u.pathname.replace(/^\//, '') || u.searchParams.get('db') || 0);
  return { ...common, host: u.hostname || '127.0.0.1', port: Number(u.port || 6379), db };
}

// --- helpers shared with _proto --------------------------------------------------------------

const PAD = 'x'.repeat(PAD_LEN);

function wallTime() {
  return (performance.timeOrigin + performance.now()) / 1000; // like Python's time.time()
}

function payload(i, stamp = false) {
  return { i, t: stamp ? wallTime() : 0, pad: PAD };
}

function* batches(n, size) {
  for (let start = 0; start < n; start += size) {
    const end = Math.min(n, start + size);
    yield Array.from({ length: end - start }, (_, k) => start + k);
  }
}

function emitResult(result) {
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

function log(text) {
  process.stderr.write(`${text}\n`);
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function peakRssKb() {
  try {
    const m = /^VmHWM:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'ascii'));
    if (m) return Number(m[1]);
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS; // kB
}

// Exit when the harness that started us is gone (no PDEATHSIG in Node).
function tieToParent() {
  const expected = process.env.BENCH_PARENT_PID;
  const parent = expected !== undefined ? Number(expected) : process.ppid;
  if (process.ppid !== parent) process.exit(3);
  setInterval(() => {
    if (process.ppid !== parent) process.exit(3);
  }, 1000).unref();
}

// Print READY, read one line from stdin (the harness's go); resolve with performance.now().
function waitForGo() {
  process.stdout.write('READY\n');
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (chunk) => {
      buf += chunk;
      if (buf.includes('\n')) {
        cleanup();
        resolve(performance.now());
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error('stdin closed before the go signal'));
    };
    const cleanup = () => {
      process.stdin.off('data', onData);
      process.stdin.off('end', onEnd);
      process.stdin.pause();
    };
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', onData);
    process.stdin.on('end', onEnd);
    process.stdin.resume();
  });
}

// Counts finished tasks toward N; local, or shared through an O_APPEND file (W6).
class Counter {
  constructor(n, path, recordLatency) {
    this.n = n;
    this.recordLatency = recordLatency;
    this.jobsHere = 0;
    this.extra = 0;
    this.latenciesMs = [];
    this.tLast = 0;
    this.tLastWall = 0;
    this.tGo = 0;
    this.tGoWall = 0;
    this.cpu0 = 0;
    this.reached = n <= 0;
    this.fd = path ? fs.openSync(path, 'a') : null;
    this.watcher = null;
    this.reachedPromise = new Promise((resolve) => {
      this.resolveReached = resolve;
    });
    if (this.reached) this.resolveReached();
  }

  async go() {
    this.tGo = await waitForGo();
    this.tGoWall = wallTime();
    this.cpu0 = cpuSeconds();
    if (this.fd !== null && !this.reached) {
      this.watcher = setInterval(() => {
        if (fs.fstatSync(this.fd).size >= this.n) this.setReached();
      }, WATCH_INTERVAL_MS);
    }
  }

  start(data) {
    if (!this.recordLatency) return;
    const stamp = data && typeof data === 'object' ? data.t : data;
    if (stamp) this.latenciesMs.push((wallTime() - Number(stamp)) * 1000);
  }

  hit() {
    if (this.reached) {
      this.extra += 1; // in flight when the target was reached: not counted
      return true;
    }
    this.jobsHere += 1;
    this.tLast = performance.now();
    this.tLastWall = wallTime();
    let done;
    if (this.fd !== null) {
      fs.writeSync(this.fd, '.');
      done = fs.fstatSync(this.fd).size >= this.n;
    } else {
      done = this.jobsHere >= this.n;
    }
    if (done) this.setReached();
    return done;
  }

  setReached() {
    if (this.reached && this.watcher === null) return;
    this.reached = true;
    if (this.watcher !== null) {
      clearInterval(this.watcher);
      this.watcher = null;
    }
    this.resolveReached();
  }

  wait() {
    return this.reachedPromise;
  }

  result(extra) {
    const out = {
      jobs_here: this.jobsHere,
      seconds: this.jobsHere ? Math.max(0, (this.tLast - this.tGo) / 1000) : 0,
      cpu_seconds: cpuSeconds() - this.cpu0,
      peak_rss_kb: peakRssKb(),
      t_go_wall: this.tGoWall,
      t_last_wall: this.tLastWall,
      reached: this.reached,
      extra: this.extra,
    };
    if (this.recordLatency) out.latencies_ms = this.latenciesMs.map((x) => Math.round(x * 1000) / 1000);
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
    return { ...out, ...extra };
  }
}

// --- roles -------------------------------------------------------------------------------------

function jobOpts(delayS = 0) {
  const opts = { removeOnComplete: true };
  if (delayS > 0) opts.delay = Math.round(delayS * 1000);
  return opts;
}

async function openQueue(args) {
  const queue = new Queue(args.queue, { connection: connectionOptions(args.url) });
  await queue.waitUntilReady(); // connect before the clock starts
  return queue;
}

async function timed(args, body) {
  const queue = await openQueue(args);
  try {
    const t0 = performance.now();
    await body(queue);
    return { jobs: args.n, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await queue.close();
  }
}

async function enqueueSingle(args) {
  const opts = jobOpts();
  return timed(args, async (queue) => {
    for (let i = 0; i < args.n; i++) await queue.add(NAME, payload(i), opts);
  });
}

async function enqueueBulk(args) {
  const opts = jobOpts(args.delayS);
  return timed(args, async (queue) => {
    for (const batch of batches(args.n, args.batch)) {
      await queue.addBulk(batch.map((i) => ({ name: NAME, data: payload(i), opts })));
    }
  });
}

async function produce(args) {
  const opts = jobOpts();
  const interval = 1000 / args.rate;
  return timed(args, async (queue) => {
    const t0 = performance.now();
    for (let i = 0; i < args.n; i++) {
      const delay = t0 + i * interval - performance.now(); // absolute schedule: no drift
      if (delay > 0) await sleep(delay);
      await queue.add(NAME, payload(i, true), opts);
    }
  });
}

async function work(args) {
  const counter = new Counter(args.n, args.counter, args.recordLatency);
  const sleepMs = args.sleepMs;
  const processor = async (job) => {
    counter.start(job.data);
    if (sleepMs > 0) await sleep(sleepMs);
    counter.hit();
  };
  const worker = new Worker(args.queue, processor, {
    connection: connectionOptions(args.url),
    concurrency: args.concurrency,
    autorun: false,
  });
  let failure = null;
  worker.on('error', (err) => {
    failure = failure ?? err;
    log(`worker error: ${err?.stack ?? err}`);
  });
  await worker.waitUntilReady(); // connect before READY
  await counter.go();
  const runner = worker.run();
  const stopped = runner.then(
    () => 'stopped',
    (err) => {
      throw err;
    },
  );
  const outcome = await Promise.race([counter.wait().then(() => 'reached'), stopped]);
  if (outcome !== 'reached') throw new Error('the worker stopped before the target was reached');
  await worker.close();
  await runner;
  if (failure && !counter.reached) throw failure;
  return counter.result({ concurrency: args.concurrency, model: 'event loop (async processor)' });
}

const HANDLERS = {
  'enqueue-single': enqueueSingle,
  'enqueue-bulk': enqueueBulk,
  fill: enqueueBulk,
  work,
  produce,
};

async function main() {
  const args = parseArgs(process.argv.slice(2));
  tieToParent();
  const result = await HANDLERS[args.role](args);
  emitResult(result);
}

main().then(
  () => process.exit(0),
  (err) => {
    log(err?.stack ?? String(err));
    process.exit(1);
  },
);
