/**
 * The interfaces facing this node's pods (`--pod-interface`, e.g. a bridge
 * CNI's `cni0`): the program on their ingress translates a pod's packets to a
 * VIP (hairpin) and local backends' replies, and marks them in `pod_ifaces`
 * (docs/dataplane.md). A CNI creates its bridge with the node's first pod, so
 * an interface that is not there yet is attached when it appears: the agent
 * says so once and looks again every few seconds, and serves the uplink in the
 * meantime.
 *
 * @module
 */
import { errorText, type Logger } from "./log.ts";
import { LibbpfError } from "./bpf/libbpf.ts";

const ENODEV = 19;

/** What {@linkcode attachPodInterfaces} needs of the data plane. */
export interface PodAttacher {
  attach(ifname: string, options: { pods: true }): string;
}

/** Running attachment: {@linkcode PodInterfaces.stop} ends the retries (links stay pinned). */
export interface PodInterfaces {
  /** Names attached so far. */
  readonly attached: ReadonlySet<string>;
  /** Stops looking for interfaces not attached yet. */
  stop(): void;
}

/**
 * Attaches the program to each of `names` as a pod interface, now or, for one
 * missing or failing, every `retryMs` until it succeeds. Each distinct failure
 * of an interface is logged once.
 *
 * @example
 * ```ts
 * const pods = attachPodInterfaces(dp, ["cni0"], log);
 * // ... on shutdown
 * pods.stop();
 * ```
 */
export function attachPodInterfaces(
  dp: PodAttacher,
  names: readonly string[],
  log: Logger,
  options: { retryMs?: number } = {},
): PodInterfaces {
  const retryMs = options.retryMs ?? 5_000;
  const attached = new Set<string>();
  const lastError = new Map<string, string>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const tryAll = () => {
    timer = undefined;
    for (const name of names) {
      if (attached.has(name)) continue;
      try {
        const mode = dp.attach(name, { pods: true });
        attached.add(name);
        log("info", "pod interface attached", { interface: name, mode });
      } catch (e) {
        const missing = e instanceof LibbpfError && e.errno === ENODEV;
        const text = missing ? "absent" : errorText(e);
        if (lastError.get(name) !== text) {
          lastError.set(name, text);
          if (missing) {
            log("warn", "pod interface not present; attaching it when it appears", {
              interface: name,
            });
          } else {
            log("error", "pod interface not attached; trying again", {
              interface: name,
              error: text,
            });
          }
        }
      }
    }
    if (!stopped && attached.size < names.length) timer = setTimeout(tryAll, retryMs);
  };
  tryAll();
  return {
    attached,
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
