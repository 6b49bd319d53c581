/**
 * A work queue of keys, as controllers use: a key queued many times is
 * processed once (de-duplication), never by two workers at once (in-flight
 * exclusion: re-added while processing, it is queued again when done), and a
 * key that fails is retried after a per-key exponential backoff.
 *
 * @module
 */

/** Backoff of one key: base * 2^failures, capped; and which keys can wait. */
export interface BackoffOptions {
  /** First retry delay in ms. */
  baseMs?: number;
  /** Longest delay in ms. */
  maxMs?: number;
  /**
   * Keys that go to workers only when no other key is waiting (e.g. route
   * status writes, which must not hold a Gateway's table behind them).
   */
  background?: (key: string) => boolean;
}

/**
 * The queue. `get()` waits for a key; the caller must call `done(key)` after
 * processing, then `forget(key)` on success or `retry(key)` on failure.
 *
 * @example
 * ```ts
 * const queue = new WorkQueue();
 * queue.add("default/gw");
 * const key = await queue.get();
 * try { await work(key); queue.forget(key); } catch { queue.retry(key); }
 * finally { queue.done(key); }
 * ```
 */
export class WorkQueue {
  #queue: string[] = [];
  #backgroundQueue: string[] = [];
  #queued = new Set<string>();
  #processing = new Set<string>();
  #dirty = new Set<string>();
  #failures = new Map<string, number>();
  #timers = new Map<string, ReturnType<typeof setTimeout>>();
  /** {@linkcode WorkQueue.addCoalesced}: when each key was last queued that way, and its timer. */
  #coalescedAt = new Map<string, number>();
  #coalesceTimers = new Map<string, ReturnType<typeof setTimeout>>();
  #waiters: ((key: string | undefined) => void)[] = [];
  /** When each waiting key was queued (performance.now), and how long taken keys waited. */
  #queuedAt = new Map<string, number>();
  #waited = new Map<string, number>();
  #shutDown = false;
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #background: ((key: string) => boolean) | undefined;

  /** A queue with the given backoff (defaults: 50 ms doubling to 5 min). */
  constructor(options: BackoffOptions = {}) {
    this.#baseMs = options.baseMs ?? 50;
    this.#maxMs = options.maxMs ?? 300_000;
    this.#background = options.background;
  }

  /** Keys waiting (not in flight, not in backoff). */
  get length(): number {
    return this.#queue.length + this.#backgroundQueue.length;
  }

  /** Queues a key unless it is queued already; a key in flight is queued when done. */
  add(key: string): void {
    if (this.#shutDown) return;
    if (this.#processing.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#processing.add(key);
      this.#waited.set(key, 0);
      waiter(key);
      return;
    }
    this.#queued.add(key);
    this.#queuedAt.set(key, performance.now());
    if (this.#background?.(key)) this.#backgroundQueue.push(key);
    else this.#queue.push(key);
  }

  /**
   * Queues a key at most once per `intervalMs` on this path: at once when it
   * was not queued this way within the interval, else once at the interval's
   * end, however many calls came meanwhile. For events that arrive in bursts
   * and each ask for the same work (N nodes reporting one table generation):
   * a lone event waits for nothing, a burst costs one reconcile an interval.
   */
  addCoalesced(key: string, intervalMs: number): void {
    if (this.#shutDown || this.#coalesceTimers.has(key)) return;
    const now = performance.now();
    const last = this.#coalescedAt.get(key);
    if (last === undefined || now - last >= intervalMs) {
      this.#queueCoalesced(key, now, intervalMs);
      return;
    }
    this.#coalesceTimers.set(
      key,
      setTimeout(() => {
        this.#coalesceTimers.delete(key);
        this.#queueCoalesced(key, performance.now(), intervalMs);
      }, last + intervalMs - now),
    );
  }

  /**
   * Queues `key` at once, as {@linkcode WorkQueue.addCoalesced} would at its
   * interval's end: a waiting coalesced add of it is dropped, and the interval
   * starts again from now.
   */
  addCoalescedNow(key: string, intervalMs: number): void {
    if (this.#shutDown) return;
    const timer = this.#coalesceTimers.get(key);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.#coalesceTimers.delete(key);
    }
    this.#queueCoalesced(key, performance.now(), intervalMs);
  }

  #queueCoalesced(key: string, now: number, intervalMs: number): void {
    this.#coalescedAt.set(key, now);
    if (this.#coalescedAt.size > 1024) {
      // keys of Gateways long gone: only the ones within an interval matter
      for (const [k, at] of this.#coalescedAt) {
        if (now - at >= intervalMs) this.#coalescedAt.delete(k);
      }
    }
    this.add(key);
  }

  /** The next key, marked in flight; undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    const key = this.#queue.shift() ?? this.#backgroundQueue.shift();
    if (key !== undefined) {
      this.#queued.delete(key);
      this.#processing.add(key);
      this.#waited.set(key, performance.now() - (this.#queuedAt.get(key) ?? performance.now()));
      this.#queuedAt.delete(key);
      return Promise.resolve(key);
    }
    if (this.#shutDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /**
   * How long a key in flight waited in the queue before a worker took it, in
   * ms (0 when a worker was idle); for logs that trace a change's latency.
   */
  waitedMs(key: string): number {
    return this.#waited.get(key) ?? 0;
  }

  /** Marks a key processed; if it was added meanwhile, it is queued again. */
  done(key: string): void {
    this.#processing.delete(key);
    this.#waited.delete(key);
    if (this.#dirty.delete(key)) this.add(key);
  }

  /** Clears a key's failure count after success. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  /** Failures of a key since its last success. */
  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Delay the next retry of a key would get, in ms. */
  backoffMs(key: string): number {
    const n = this.failures(key);
    return Math.min(this.#maxMs, this.#baseMs * 2 ** n);
  }

  /** Queues a failed key again after its backoff, which then doubles. */
  retry(key: string): number {
    if (this.#shutDown) return 0;
    const delay = this.backoffMs(key);
    this.#failures.set(key, this.failures(key) + 1);
    if (this.#timers.has(key)) return delay; // one pending retry is enough
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, delay);
    this.#timers.set(key, timer);
    return delay;
  }

  /** Stops the queue: pending retries are cancelled and waiting `get()`s return undefined. */
  shutdown(): void {
    this.#shutDown = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    for (const t of this.#coalesceTimers.values()) clearTimeout(t);
    this.#coalesceTimers.clear();
    for (const w of this.#waiters.splice(0)) w(undefined);
  }
}
