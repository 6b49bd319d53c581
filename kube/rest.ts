/**
 * Raw JSON requests to the API server, with the transport and credentials of
 * `@kubernetes/client-node` (client certificates, bearer and exec-plugin
 * tokens, CA, proxies) but without its typed (de)serialisation: objects stay
 * exactly as the API server sent them (timestamps as strings, MicroTime's six
 * digits intact), and every request can be aborted, also while connecting.
 *
 * @module
 */

import "./_no_deprecation_warnings.ts";
import http from "node:http";
import https from "node:https";
// The exception module alone: the package's index loads every generated model (docs/decisions.md).
import { ApiException } from "@kubernetes/client-node/dist/gen/apis/exception.js";
import { pooledAgent } from "./connections.ts";
import type { RestConfig } from "./kubeconfig.ts";

/** The HTTP status of a failed API call (ours or client-node's), when it has one. */
export function apiStatus(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  return undefined;
}

/** Options of {@link requestJson}. */
export interface RequestOptions {
  /** HTTP method (default GET). */
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** Query parameters; `undefined` values are left out. */
  query?: Record<string, string | number | boolean | undefined>;
  /** Request body, sent as JSON. */
  body?: unknown;
  /** Content-Type of the body (default `application/json`). */
  contentType?: string;
  /**
   * Accept header (default `application/json`); {@link METADATA_ONLY} for a
   * write whose answer the caller reads only the metadata of.
   */
  accept?: string;
  /** Aborts the request, also while it connects. */
  signal?: AbortSignal | undefined;
  /** Gives up after this long (default 30 s; 0 for never). */
  timeoutMs?: number;
}

/**
 * Accept header that has the API server answer a write (or a GET) with the
 * object's metadata only (`PartialObjectMetadata`: resourceVersion,
 * generation, managedFields...), so it neither encodes the whole object nor
 * does the client parse it back (docs/performance.md).
 */
export const METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/** Options of {@link streamJsonLines}. */
export interface StreamOptions {
  /** Called with each line's JSON document (a watch event). */
  onLine: (doc: unknown) => void;
  query?: Record<string, string | number | boolean | undefined>;
  /** Ends the stream (the promise resolves). */
  signal?: AbortSignal | undefined;
  /** Aborts with an {@link IdleTimeoutError} when nothing arrives for this long (0 for never). */
  idleTimeoutMs?: number;
}

/** A stream on which nothing arrived for its idle timeout: the connection may be dead. */
export class IdleTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IdleTimeoutError";
  }
}

/** A request that got no 2xx: the status code and the API server's Status object. */
export class ApiError extends ApiException<unknown> {
  /** `reason` of the Status (e.g. `Conflict`, `Expired`, `NotFound`). */
  readonly reason: string;
  constructor(code: number, message: string, body: unknown) {
    super(code, message, body, {});
    const status = body as { reason?: unknown } | undefined;
    this.reason = typeof status?.reason === "string" ? status.reason : "";
    this.name = "ApiError";
  }
}

function buildUrl(
  kc: RestConfig,
  path: string,
  query: Record<string, string | number | boolean | undefined> | undefined,
): URL {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig names no cluster for its current context");
  const url = new URL(cluster.server.replace(/\/+$/, "") + path);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined) url.searchParams.set(key, String(value));
  }
  return url;
}

/**
 * A request on a kept-alive connection that the API server had closed (an
 * idle timeout, a restart) before any answer came: safe to send again once.
 */
class StaleConnectionError extends Error {
  constructor(cause: unknown) {
    super(`kept-alive connection was closed: ${(cause as Error)?.message}`, { cause });
    this.name = "StaleConnectionError";
  }
}

/**
 * Opens a request with the kubeconfig's credentials; the caller reads the response.
 * `pooled`: on the kubeconfig's shared kept-alive connections when it has them
 * ({@link shareConnections}); otherwise, and for watches, a connection of its own.
 */
async function open(
  kc: RestConfig,
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  signal: AbortSignal,
  pooled: boolean,
): Promise<http.IncomingMessage> {
  // client-node makes a fresh agent per call, so no idle socket outlives the
  // request; a kubeconfig that shares connections swaps in its pooled agent.
  const opts: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  signal.throwIfAborted();
  const agent = (pooled ? pooledAgent(kc, opts.agent) : undefined) ?? opts.agent;
  const mod = url.protocol === "http:" ? http : https;
  return await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = mod.request(url, {
      method,
      agent,
      headers: { ...(opts.headers ?? {}), ...headers },
      ...(opts.auth ? { auth: opts.auth } : {}),
    });
    req.on("error", (err) => {
      unlink();
      const reused = (req as { reusedSocket?: boolean }).reusedSocket === true;
      const code = (err as { code?: string }).code;
      if (
        reused && !signal.aborted &&
        (code === "ECONNRESET" || code === "EPIPE" || /socket hang up/i.test(err.message))
      ) {
        reject(new StaleConnectionError(err));
      } else reject(err);
    });
    req.on("response", (res) => {
      // From here the reader owns the abort; destroying the response ends it.
      unlink();
      if (signal.aborted) {
        res.destroy();
        reject(abortError(signal));
        return;
      }
      resolve(res);
    });
    // as Node's agents do: a request's writes go out at once, not after the last one's ACK
    req.on("socket", (socket) => socket.setNoDelay(true));
    const unlink = whenAborted(signal, () => req.destroy(abortError(signal)));
    req.end(body);
  });
}

/**
 * Calls `fn` when `signal` aborts, or at once if it already has (a listener
 * added to an aborted signal would never run); returns a function that unlinks it.
 */
function whenAborted(signal: AbortSignal, fn: () => void): () => void {
  if (signal.aborted) {
    fn();
    return () => {};
  }
  signal.addEventListener("abort", fn, { once: true });
  return () => signal.removeEventListener("abort", fn);
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException("aborted", "AbortError");
}

async function readBody(res: http.IncomingMessage, signal: AbortSignal): Promise<string> {
  const unlink = whenAborted(signal, () => res.destroy(abortError(signal)));
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  } finally {
    unlink();
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorFrom(status: number, body: unknown): ApiError {
  const message = typeof (body as { message?: unknown })?.message === "string"
    ? (body as { message: string }).message
    : `HTTP ${status}`;
  return new ApiError(status, message, body);
}

/**
 * Sends one request and returns the parsed JSON body; throws an
 * {@link ApiError} for a non-2xx answer.
 *
 * @example
 * ```ts
 * const lease = await requestJson(kc, "/apis/coordination.k8s.io/v1/namespaces/ns/leases/x");
 * ```
 */
export async function requestJson<T = unknown>(
  kc: RestConfig,
  path: string,
  options: RequestOptions = {},
): Promise<T> {
  const controller = new AbortController();
  const timeoutMs = options.timeoutMs ?? 30_000;
  const timer = timeoutMs > 0
    ? setTimeout(
      () => controller.abort(new Error(`${options.method ?? "GET"} ${path}: timed out`)),
      timeoutMs,
    )
    : undefined;
  const unlinkCaller = options.signal
    ? whenAborted(options.signal, () => controller.abort(options.signal?.reason))
    : () => {};
  try {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const headers: Record<string, string> = { Accept: options.accept ?? "application/json" };
    if (body !== undefined) {
      headers["Content-Type"] = options.contentType ?? "application/json";
    }
    const url = buildUrl(kc, path, options.query);
    const method = options.method ?? "GET";
    let res: http.IncomingMessage;
    try {
      res = await open(kc, url, method, headers, body, controller.signal, true);
    } catch (err) {
      if (!(err instanceof StaleConnectionError)) throw err;
      res = await open(kc, url, method, headers, body, controller.signal, true);
    }
    const text = await readBody(res, controller.signal);
    const status = res.statusCode ?? 0;
    const json = parseJson(text);
    if (status < 200 || status > 299) throw errorFrom(status, json);
    return json as T;
  } finally {
    clearTimeout(timer);
    unlinkCaller();
  }
}

/**
 * Streams a response of one JSON document a line (a watch), calling `options.onLine`
 * for each, until the server ends it (resolves), `signal` aborts it
 * (resolves) or it fails (rejects; a non-2xx answer as an {@link ApiError}).
 */
export async function streamJsonLines(
  kc: RestConfig,
  path: string,
  options: StreamOptions,
): Promise<void> {
  const controller = new AbortController();
  if (options.signal?.aborted) return;
  const unlinkCaller = options.signal
    ? whenAborted(options.signal, () => controller.abort(options.signal?.reason))
    : () => {};
  let idle: ReturnType<typeof setTimeout> | undefined;
  const idleMs = options.idleTimeoutMs ?? 0;
  const armIdle = () => {
    if (idleMs <= 0) return;
    clearTimeout(idle);
    idle = setTimeout(
      () => controller.abort(new IdleTimeoutError(`${path}: nothing received for ${idleMs} ms`)),
      idleMs,
    );
  };
  try {
    armIdle();
    const res = await open(
      kc,
      buildUrl(kc, path, options.query),
      "GET",
      { Accept: "application/json" },
      undefined,
      controller.signal,
      false,
    );
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      throw errorFrom(status, parseJson(await readBody(res, controller.signal)));
    }
    const unlinkStream = whenAborted(
      controller.signal,
      () => res.destroy(abortError(controller.signal)),
    );
    try {
      const decoder = new TextDecoder();
      let pending = "";
      for await (const chunk of res) {
        armIdle();
        pending += decoder.decode(chunk as Uint8Array, { stream: true });
        let newline: number;
        while ((newline = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          if (line !== "") options.onLine(JSON.parse(line));
        }
      }
    } finally {
      unlinkStream();
    }
  } catch (err) {
    // Stopped by the caller: the end of the stream, not a failure.
    if (options.signal?.aborted) return;
    throw err;
  } finally {
    clearTimeout(idle);
    unlinkCaller();
  }
}
