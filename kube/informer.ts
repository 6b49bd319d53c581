/**
 * An informer: a local, always-converging copy of one kind of object.
 *
 * ```
 *            list (paged)            watch ?resourceVersion=R&allowWatchBookmarks
 * API server ─────────────► cache ◄──────────────────────────────────────────── API server
 *                             │  ▲  410 Gone / "too old resource version": list again,
 *                             │  │  diff against the cache (deletes, updates, adds)
 *                             │  └─ closed stream, or one that broke after delivering
 *                             │     events: watch again from R at once; any other error:
 *                             ▼     after a capped exponential backoff with jitter
 *                 add / update / delete handlers
 * ```
 *
 * Works for any resource (core, discovery.k8s.io, gateway.networking.k8s.io,
 * custom resources): give its apiVersion and kind or plural.
 *
 * Why not client-node's `ListWatch`/`makeInformer` (1.4.0): it does not ask
 * for bookmarks, gives up for good after any error other than 410 (no
 * reconnect, no backoff), has no synced signal, and its `Watch` hands out the
 * abort controller only once the response has started, so `stop()` cannot
 * end a request that is still connecting. See docs/decisions.md.
 *
 * @example
 * ```ts
 * const services = new Informer(kc, { apiVersion: "v1", kind: "Service" });
 * services.on("update", (svc, old) => queue.add(svc));
 * services.start();
 * await services.synced;
 * services.get("echo", "default");
 * await services.stop();
 * ```
 *
 * @module
 */

import type { k8s, KubeObject } from "./client.ts";
import type { RestConfig } from "./kubeconfig.ts";
import { backoffDelay, type BackoffOptions, childController, sleep } from "./backoff.ts";
import { errorMessage, jsonLog, type Log } from "./log.ts";
import {
  collectionPath,
  type ResolvedResource,
  resolveResource,
  type ResourceRef,
} from "./resource.ts";
import { ApiError, IdleTimeoutError, requestJson, streamJsonLines } from "./rest.ts";

export type { ResourceRef };

/** Options of an {@link Informer}. */
export interface InformerOptions {
  /** Only objects of this namespace (default: all namespaces). */
  namespace?: string;
  /** Only objects whose labels match, e.g. `app.kubernetes.io/part-of=blixt`. */
  labelSelector?: string;
  /** Only objects whose fields match, e.g. `metadata.name=blixt`. */
  fieldSelector?: string;
  /** Backoff between reconnects (default 800 ms doubling up to 30 s, jittered). */
  backoff?: BackoffOptions;
  /** Objects per list page (default 500; 0 lists in one request). */
  pageSize?: number;
  /**
   * Server-side watch timeout, chosen at random in [min, max] seconds for each
   * watch so that informers do not reconnect in lock-step (default 300-600).
   */
  watchTimeoutSeconds?: [number, number];
  /**
   * Watches again when nothing (not even a bookmark, which the API server
   * sends every one to two minutes) arrives for this long: a connection that
   * died without a FIN or RST is noticed (default 180 s).
   */
  idleTimeoutMs?: number;
  /**
   * Turns each object into what the cache keeps, before handlers see it:
   * e.g. {@link dropManagedFields} to save memory at scale.
   */
  transform?: (obj: KubeObject) => KubeObject;
  /** Receives the informer's log lines (default: JSON lines on stderr). */
  log?: Log;
}

/** The handlers an {@link Informer} calls, by event. */
export interface InformerHandlers<T> {
  /** A new object (also each object of the first list). */
  add: (obj: T) => void;
  /** An object changed (its resourceVersion); `old` is what the cache had. */
  update: (obj: T, old: T) => void;
  /**
   * An object is gone. `obj` is its final state from a watch, or the last
   * state the cache had when a re-list found it missing.
   */
  delete: (obj: T) => void;
}

/** An informer event's name. */
export type InformerEvent = keyof InformerHandlers<unknown>;

interface ListResponse {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items?: KubeObject[];
}

interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: KubeObject;
}

interface Status {
  code?: number;
  reason?: string;
  message?: string;
}

/** Whether `err` says the resourceVersion is no longer (or not yet) served: list again. */
function mustRelist(code: number | undefined, reason: string, message: string): boolean {
  return code === 410 || reason === "Expired" || reason === "Gone" ||
    /too (old|large) resource version/i.test(message);
}

function errorMustRelist(err: unknown): boolean {
  if (err instanceof ApiError) return mustRelist(err.code, err.reason, err.message);
  return false;
}

class WatchStatusError extends ApiError {}

function keyOf(obj: k8s.KubernetesObject): [string, string] {
  return [obj.metadata?.namespace ?? "", obj.metadata?.name ?? ""];
}

function resourceVersionOf(obj: k8s.KubernetesObject): string | undefined {
  return obj.metadata?.resourceVersion;
}

/**
 * A {@link InformerOptions.transform} that leaves out `metadata.managedFields`
 * (server-side apply bookkeeping, often the larger part of a small object).
 */
export function dropManagedFields(obj: KubeObject): KubeObject {
  if (!obj.metadata?.managedFields) return obj;
  const { managedFields: _, ...metadata } = obj.metadata;
  return { ...obj, metadata };
}

/**
 * A list+watch cache of one kind of object, with add/update/delete handlers.
 * Construct, register handlers, {@link Informer.start}, await
 * {@link Informer.synced}; {@link Informer.stop} ends every request and timer.
 * Objects handed out are the cache's own: read them, do not change them.
 */
export class Informer<T extends k8s.KubernetesObject = KubeObject> {
  /** Resolves once the first list is in the cache (rejects if stopped before). */
  readonly synced: Promise<void>;
  readonly #kc: RestConfig;
  readonly #ref: ResourceRef;
  readonly #options: InformerOptions;
  readonly #log: Log;
  readonly #stop = new AbortController();
  readonly #handlers: { [E in InformerEvent]: Set<InformerHandlers<T>[E]> } = {
    add: new Set(),
    update: new Set(),
    delete: new Set(),
  };
  #cache = new Map<string, Map<string, T>>();
  #resourceVersion = "";
  #resource: ResolvedResource | undefined;
  #loop: Promise<void> | undefined;
  #hasSynced = false;
  /** When the last watch event (a bookmark included) arrived. */
  #lastEventAt = 0;
  #resolveSynced!: () => void;
  #rejectSynced!: (err: Error) => void;

  /** An informer of `resource` (not started). */
  constructor(kc: RestConfig, resource: ResourceRef, options: InformerOptions = {}) {
    this.#kc = kc;
    this.#ref = resource;
    this.#options = options;
    this.#log = options.log ?? jsonLog;
    this.synced = new Promise<void>((resolve, reject) => {
      this.#resolveSynced = resolve;
      this.#rejectSynced = reject;
    });
    // Nobody awaiting `synced` when stop() rejects it is fine, not a crash.
    this.synced.catch(() => {});
  }

  /** What this informer watches, for log lines and errors. */
  get description(): string {
    const what = this.#ref.plural ?? this.#ref.kind ?? "?";
    const ns = this.#options.namespace ? ` in ${this.#options.namespace}` : "";
    return `${this.#ref.apiVersion} ${what}${ns}`;
  }

  /** Whether the first list is in the cache. */
  get hasSynced(): boolean {
    return this.#hasSynced;
  }

  /** The resourceVersion the cache is at (last list, event or bookmark). */
  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  /**
   * Calls `handler` on `event` from now on; returns a function that stops it.
   * Handlers run synchronously after the cache is updated, so they (and
   * anything they wake) read a cache that already has the change.
   */
  on<E extends InformerEvent>(event: E, handler: InformerHandlers<T>[E]): () => void {
    this.#handlers[event].add(handler);
    return () => this.#handlers[event].delete(handler);
  }

  /** The cached object `name` (in `namespace`, for namespaced kinds). */
  get(name: string, namespace?: string): T | undefined {
    return this.#cache.get(namespace ?? "")?.get(name);
  }

  /** The cached objects, of `namespace` when given, otherwise all. */
  list(namespace?: string): T[] {
    if (namespace !== undefined) return [...(this.#cache.get(namespace)?.values() ?? [])];
    const all: T[] = [];
    for (const objects of this.#cache.values()) all.push(...objects.values());
    return all;
  }

  /** Starts listing and watching (once); returns the informer. */
  start(): this {
    if (this.#loop) throw new Error(`informer of ${this.description} was already started`);
    if (this.#stop.signal.aborted) throw new Error(`informer of ${this.description} was stopped`);
    this.#loop = this.#run();
    return this;
  }

  /** Ends the watch, any request and timer; no handler is called afterwards. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    if (!this.#hasSynced) {
      this.#rejectSynced(new Error(`informer of ${this.description} stopped before it synced`));
    }
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    let failures = 0;
    let needList = true;
    let relistsInARow = 0;
    let attemptStarted = 0;
    while (!signal.aborted) {
      attemptStarted = performance.now();
      try {
        this.#resource ??= await resolveResource(this.#kc, this.#ref, { signal });
        if (needList) {
          // Two re-lists in a row without a working watch in between: back off.
          if (relistsInARow > 1) {
            await sleep(backoffDelay(relistsInARow - 1, this.#options.backoff), signal);
          }
          if (signal.aborted) break;
          await this.#list(this.#resource);
          needList = false;
          failures = 0;
        }
        const { events, expired } = await this.#watch(this.#resource);
        if (events > 0) relistsInARow = 0;
        if (expired) {
          needList = true;
          relistsInARow++;
          this.#log({
            level: "info",
            msg: "re-listing: resourceVersion expired",
            resource: this.description,
            resourceVersion: this.#resourceVersion,
          });
          continue;
        }
        if (signal.aborted) break;
        // A stream the server ends at once, again and again, must not spin.
        if (events === 0 && performance.now() - attemptStarted < 1000) {
          throw new Error("watch closed without a single event");
        }
        failures = 0;
        this.#log({
          level: "debug",
          msg: "watch ended; watching again",
          resource: this.description,
        });
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof IdleTimeoutError) {
          // Silence for that long (bookmarks come every minute or two) means a
          // dead connection: watch again at once; each try took the timeout.
          this.#log({
            level: "debug",
            msg: "watch idle; watching again",
            resource: this.description,
          });
          continue;
        }
        if (errorMustRelist(err)) {
          needList = true;
          relistsInARow++;
          this.#log({
            level: "info",
            msg: "re-listing: resourceVersion expired",
            resource: this.description,
            error: errorMessage(err),
          });
          continue;
        }
        if (this.#lastEventAt > attemptStarted) {
          // A watch that worked, then broke (a reset, a stream cut mid-way): watch again at once
          // from the resourceVersion, as after a timeout. A backoff here held every change made
          // meanwhile for 0.4-0.8 s; a second failure in a row, before any event, backs off.
          failures = 0;
          this.#log({
            level: "info",
            msg: "watch broke; watching again",
            resource: this.description,
            error: errorMessage(err),
            watchedMs: Math.round(performance.now() - attemptStarted),
          });
          continue;
        }
        failures++;
        const delayMs = Math.round(backoffDelay(failures, this.#options.backoff));
        this.#log({
          level: "warn",
          msg: "list/watch failed; retrying",
          resource: this.description,
          error: errorMessage(err),
          attempt: failures,
          retryInMs: delayMs,
        });
        await sleep(delayMs, signal);
      }
    }
  }

  /** Lists every object (in pages) and makes the cache equal to the list. */
  async #list(resource: ResolvedResource): Promise<void> {
    const started = Date.now();
    const path = collectionPath(resource, this.#options.namespace);
    const signal = this.#stop.signal;
    let limit: number | undefined = this.#options.pageSize ?? 500;
    if (limit === 0) limit = undefined;
    let items: T[] = [];
    let cont: string | undefined;
    let resourceVersion = "";
    do {
      let page: ListResponse;
      try {
        page = await requestJson<ListResponse>(this.#kc, path, {
          query: {
            limit,
            continue: cont,
            labelSelector: this.#options.labelSelector,
            fieldSelector: this.#options.fieldSelector,
          },
          signal,
          timeoutMs: 60_000,
        });
      } catch (err) {
        if (cont !== undefined && errorMustRelist(err)) {
          // The continue token expired between pages: list again in one
          // request, as client-go's pager does.
          items = [];
          cont = undefined;
          limit = undefined;
          continue;
        }
        throw err;
      }
      // List items come without apiVersion and kind; watch events have them.
      const typeMeta: { apiVersion?: string; kind?: string } = {};
      if (page.apiVersion) typeMeta.apiVersion = page.apiVersion;
      if (page.kind) typeMeta.kind = page.kind.replace(/List$/, "");
      for (const item of page.items ?? []) items.push(this.#transform({ ...typeMeta, ...item }));
      resourceVersion = page.metadata?.resourceVersion ?? "";
      cont = page.metadata?.continue || undefined;
    } while (cont !== undefined);
    if (signal.aborted) return;
    const changes = this.#replace(items, resourceVersion);
    this.#log({
      level: "info",
      msg: "listed",
      resource: this.description,
      objects: items.length,
      ...changes,
      resourceVersion,
      ms: Date.now() - started,
    });
  }

  /** Makes the cache equal to `items` and tells the handlers what changed. */
  #replace(
    items: T[],
    resourceVersion: string,
  ): { added: number; updated: number; deleted: number } {
    const old = this.#cache;
    const next = new Map<string, Map<string, T>>();
    for (const item of items) {
      const [ns, name] = keyOf(item);
      let objects = next.get(ns);
      if (!objects) next.set(ns, objects = new Map());
      objects.set(name, item);
    }
    this.#cache = next;
    this.#resourceVersion = resourceVersion;
    const deleted: T[] = [];
    for (const [ns, objects] of old) {
      for (const [name, obj] of objects) {
        if (!next.get(ns)?.has(name)) deleted.push(obj);
      }
    }
    const added: T[] = [];
    const updated: [T, T][] = [];
    for (const [ns, objects] of next) {
      for (const [name, obj] of objects) {
        const before = old.get(ns)?.get(name);
        if (!before) added.push(obj);
        else if (resourceVersionOf(before) !== resourceVersionOf(obj)) updated.push([obj, before]);
      }
    }
    for (const obj of deleted) this.#emit("delete", obj);
    for (const obj of added) this.#emit("add", obj);
    for (const [obj, before] of updated) this.#emit("update", obj, before);
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#resolveSynced();
    }
    return { added: added.length, updated: updated.length, deleted: deleted.length };
  }

  /** Watches from the cache's resourceVersion until the stream ends. */
  async #watch(resource: ResolvedResource): Promise<{ events: number; expired: boolean }> {
    const [min, max] = this.#options.watchTimeoutSeconds ?? [300, 600];
    const timeoutSeconds = Math.round(min + Math.random() * (max - min));
    // Ends this one stream (on an ERROR event) or, through stop(), everything.
    const [stream, unlink] = childController(this.#stop.signal);
    let events = 0;
    let expired = false;
    let failure: Error | undefined;
    try {
      await streamJsonLines(
        this.#kc,
        collectionPath(resource, this.#options.namespace),
        {
          onLine: (doc) => {
            if (stream.signal.aborted) return;
            const event = doc as WatchEvent;
            if (event.type === "ERROR") {
              const status = event.object as Status;
              const code = status.code ?? 500;
              if (mustRelist(code, status.reason ?? "", status.message ?? "")) expired = true;
              else failure = new WatchStatusError(code, status.message ?? "watch error", status);
              stream.abort();
              return;
            }
            events++;
            this.#lastEventAt = performance.now();
            this.#apply(event);
          },
          query: {
            watch: true,
            resourceVersion: this.#resourceVersion,
            allowWatchBookmarks: true,
            timeoutSeconds,
            labelSelector: this.#options.labelSelector,
            fieldSelector: this.#options.fieldSelector,
          },
          signal: stream.signal,
          idleTimeoutMs: this.#options.idleTimeoutMs ?? 180_000,
        },
      );
    } finally {
      unlink();
    }
    if (failure) throw failure;
    return { events, expired };
  }

  /** Applies one watch event to the cache and tells the handlers. */
  #apply(event: WatchEvent): void {
    const obj = event.type === "BOOKMARK" ? event.object as T : this.#transform(event.object);
    const resourceVersion = resourceVersionOf(obj);
    if (event.type === "BOOKMARK") {
      if (resourceVersion) this.#resourceVersion = resourceVersion;
      return;
    }
    const [ns, name] = keyOf(obj);
    const before = this.#cache.get(ns)?.get(name);
    if (event.type === "DELETED") {
      const objects = this.#cache.get(ns);
      objects?.delete(name);
      if (objects?.size === 0) this.#cache.delete(ns);
      if (resourceVersion) this.#resourceVersion = resourceVersion;
      if (before) this.#emit("delete", obj);
      return;
    }
    let objects = this.#cache.get(ns);
    if (!objects) this.#cache.set(ns, objects = new Map());
    objects.set(name, obj);
    if (resourceVersion) this.#resourceVersion = resourceVersion;
    if (!before) this.#emit("add", obj);
    else if (resourceVersionOf(before) !== resourceVersion) this.#emit("update", obj, before);
  }

  #transform(obj: KubeObject): T {
    return (this.#options.transform ? this.#options.transform(obj) : obj) as T;
  }

  #emit(event: "add" | "delete", obj: T): void;
  #emit(event: "update", obj: T, old: T): void;
  #emit(event: InformerEvent, obj: T, old?: T): void {
    if (this.#stop.signal.aborted) return;
    for (const handler of this.#handlers[event]) {
      try {
        if (event === "update") (handler as InformerHandlers<T>["update"])(obj, old!);
        else (handler as InformerHandlers<T>["add"])(obj);
      } catch (err) {
        // One consumer's bug must not stop the informer for the others.
        this.#log({
          level: "error",
          msg: `${event} handler threw`,
          resource: this.description,
          error: errorMessage(err),
        });
      }
    }
  }
}
