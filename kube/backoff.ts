/**
 * Capped exponential backoff with jitter, for retries against the API
 * server: many clients that lost the same API server do not come back in
 * lock-step.
 *
 * @module
 */

/** Shape of a backoff. */
export interface BackoffOptions {
  /** Delay before the first retry (default 800 ms, as client-go's reflector). */
  initialMs?: number;
  /** Cap of the delay (default 30 s). */
  maxMs?: number;
  /** Growth per failure (default 2). */
  factor?: number;
  /** Source of the jitter, in [0, 1) (default Math.random). */
  random?: () => number;
}

/**
 * The delay before retry number `attempt` (1 for the first retry): the
 * capped exponential `initial * factor^(attempt-1)`, jittered uniformly over
 * its upper half so that it never drops below half the nominal delay.
 *
 * @example
 * ```ts
 * backoffDelay(1); // between 400 and 800 ms
 * backoffDelay(10); // between 15 and 30 s
 * ```
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const random = options.random ?? Math.random;
  const initial = options.initialMs ?? 800;
  const max = options.maxMs ?? 30_000;
  const factor = options.factor ?? 2;
  const nominal = Math.min(max, initial * factor ** Math.max(0, attempt - 1));
  return nominal / 2 + random() * (nominal / 2);
}

/**
 * Waits `ms`, or less when `signal` aborts (then resolves, never rejects), and
 * leaves no timer behind either way.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * An AbortController that also aborts when `parent` does (at once, if it
 * already has), and a function that unlinks it once it is no longer needed.
 */
export function childController(parent: AbortSignal): [AbortController, () => void] {
  const child = new AbortController();
  const onAbort = () => child.abort(parent.reason);
  if (parent.aborted) onAbort();
  else parent.addEventListener("abort", onAbort, { once: true });
  return [child, () => parent.removeEventListener("abort", onAbort)];
}
