/**
 * The interfaces that carry the program: the uplink (`--uplink`) and those
 * facing this node's pods (`--pod-interface`, e.g. a bridge CNI's `cni0`,
 * where the program translates a pod's packets to a VIP and local backends'
 * replies; docs/dataplane.md). Every few seconds the watch asks the kernel
 * whether each still has the program (`Dataplane.attachState`) and attaches
 * it again where not:
 *
 * - an interface not there yet (a CNI makes its bridge with the node's first
 *   pod) is attached when it appears;
 * - one deleted and made again under its name (a CNI restarted, a bond or
 *   VLAN re-made) is a new device without the program: the kernel cut the
 *   pinned tcx link, which is replaced, and a pod interface's new ifindex
 *   replaces the old one in `pod_ifaces`;
 * - one whose program was removed by hand gets it back.
 *
 * Each event is logged once; `blixt_agent_interface_attached` says where the
 * program is, `blixt_agent_interface_reattaches_total` counts what was put
 * back (a re-made interface between two scrapes leaves only that trace), and
 * the problems feed the DataplaneNode's `Degraded` condition.
 *
 * @module
 */
import { errorText, type Logger } from "./log.ts";
import type { Registry } from "./metrics.ts";

/** An interface that should carry the program. */
export interface WatchedInterface {
  /** Its name, as given on the command line. */
  name: string;
  /** It faces the node's pods (`--pod-interface`); otherwise it is the uplink. */
  pods?: boolean;
  /** The caller attached it just before the watch started (the uplink, at start). */
  attached?: boolean;
}

/** What the watch needs of the data plane (`Dataplane` has it). */
export interface InterfaceAttacher {
  /** Attaches (or re-attaches) the program; returns the mode. */
  attach(ifname: string, options: { pods?: boolean; netns?: string }): string;
  /** Whether the program is on `ifname` now; `ifindex` undefined when it does not exist. */
  attachState(
    ifname: string,
    options: { netns?: string },
  ): { ifindex: number | undefined; mode: string | undefined };
  /** The maps: a re-made pod interface's old ifindex leaves `pod_ifaces`. */
  maps: { deletePodInterface(ifindex: number): void };
}

/** Options of {@linkcode watchInterfaces}. */
export interface InterfaceWatchOptions {
  /** Log lines (one per event). */
  log: Logger;
  /** Where the gauges and counters go. */
  metrics?: Registry;
  /** How often the kernel is asked; default 5 s. */
  intervalMs?: number;
  /** Network namespace of the interfaces (tests); default the agent's own. */
  netns?: string;
  /** Called when {@linkcode InterfaceWatch.problems} changes. */
  onProblems?: (problems: readonly string[]) => void;
}

/** A running watch; {@linkcode InterfaceWatch.stop} ends it (links stay pinned). */
export interface InterfaceWatch {
  /** Names carrying the program at the last look. */
  readonly attached: ReadonlySet<string>;
  /**
   * Interfaces that should carry the program and do not, one line each
   * (`cni0 (pods): not present since it was deleted`). A pod interface that
   * never existed is not one: a bridge CNI makes it with the first pod.
   */
  problems(): string[];
  /** Looks now (normally every `intervalMs`). */
  check(): void;
  /** Stops looking. */
  stop(): void;
}

const ATTACHED = "blixt_agent_interface_attached";
const ATTACHED_HELP =
  "1 while the interface carries the TC program, 0 while it should and does not.";
const REATTACHES = "blixt_agent_interface_reattaches_total";
const REATTACHES_HELP =
  "Times the program was attached again to an interface that lost it (re-made, or removed).";

interface Watched {
  readonly name: string;
  readonly pods: boolean;
  /** The ifindex the program was last attached to. */
  ifindex: number | undefined;
  attached: boolean;
  everAttached: boolean;
  looked: boolean;
  /** Attached by the caller just before the first look. */
  attachedByCaller: boolean;
  lastError: string | undefined;
  problem: string | undefined;
}

/**
 * Watches `interfaces`, attaching the program now (the first look runs before
 * this returns) and again whenever one lacks it.
 *
 * @example
 * ```ts
 * const ifaces = watchInterfaces(dp, [{ name: "eth0", attached: true }, { name: "cni0", pods: true }], { log });
 * // ... on shutdown
 * ifaces.stop();
 * ```
 */
export function watchInterfaces(
  dp: InterfaceAttacher,
  interfaces: readonly WatchedInterface[],
  options: InterfaceWatchOptions,
): InterfaceWatch {
  const { log, metrics, netns } = options;
  const intervalMs = options.intervalMs ?? 5_000;
  const ns = netns ? { netns } : {};
  const watched: Watched[] = interfaces.map((i) => ({
    name: i.name,
    pods: i.pods ?? false,
    ifindex: undefined,
    attached: false,
    everAttached: false,
    looked: false,
    attachedByCaller: i.attached ?? false,
    lastError: undefined,
    problem: undefined,
  }));
  const attached = new Set<string>();
  let lastProblems = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const label = (w: Watched) => w.pods ? "pod interface" : "uplink";
  const fields = (w: Watched, more: Record<string, unknown> = {}) => ({
    interface: w.name,
    role: w.pods ? "pods" : "uplink",
    ...more,
  });
  const failed = (w: Watched, what: string, e: unknown) => {
    const text = errorText(e);
    w.attached = false;
    w.problem = `${what}: ${text}`;
    if (w.lastError !== text) {
      w.lastError = text;
      log("error", `${label(w)} not attached; trying again`, fields(w, { error: text }));
    }
  };

  const look = (w: Watched) => {
    let state;
    try {
      state = dp.attachState(w.name, ns);
    } catch (e) {
      return failed(w, "state unknown", e);
    }
    if (state.ifindex === undefined) {
      if (w.attached) {
        log("warn", `${label(w)} gone; attaching the program when it appears again`, fields(w));
      } else if (!w.looked) {
        log("warn", `${label(w)} not present; attaching it when it appears`, fields(w));
      }
      w.attached = false;
      w.lastError = undefined;
      // A bridge CNI makes its bridge with the first pod: one never seen is not a problem yet.
      w.problem = w.pods && !w.everAttached
        ? undefined
        : `not present${w.everAttached ? " since it was deleted" : ""}`;
      return;
    }
    if (w.attachedByCaller && !w.looked && state.mode !== undefined) {
      w.ifindex = state.ifindex;
      w.attached = w.everAttached = true;
      return;
    }
    // The first look attaches even where the pins say it is (their links get this
    // agent's program); later ones where the program is missing or on another device.
    if (w.looked && state.mode !== undefined && state.ifindex === w.ifindex) return;
    const previous = w.everAttached ? w.ifindex : undefined;
    const remade = previous !== undefined && previous !== state.ifindex;
    let mode: string;
    try {
      mode = dp.attach(w.name, { pods: w.pods, ...ns });
    } catch (e) {
      return failed(w, "attach failed", e);
    }
    if (w.pods && remade) {
      try {
        dp.maps.deletePodInterface(previous);
      } catch (e) {
        log("warn", "old pod interface index not removed", fields(w, { error: errorText(e) }));
      }
    }
    const again = w.everAttached;
    if (!again) {
      log("info", `${label(w)} attached`, fields(w, { mode, ifindex: state.ifindex }));
    } else if (remade) {
      log(
        "warn",
        `${label(w)} was deleted and made again; program attached to the new one`,
        fields(w, { mode, ifindex: state.ifindex, previousIfindex: previous }),
      );
    } else {
      log("warn", `program missing from the ${label(w)}; attached again`, fields(w, { mode }));
    }
    if (again) {
      metrics?.inc(REATTACHES, REATTACHES_HELP, { labels: fields(w) as Record<string, string> });
    }
    w.ifindex = state.ifindex;
    w.attached = w.everAttached = true;
    w.lastError = undefined;
    w.problem = undefined;
  };

  const problems = () =>
    watched.filter((w) => w.problem !== undefined).map((w) =>
      `${w.name} (${w.pods ? "pods" : "uplink"}): ${w.problem}`
    );

  const check = () => {
    for (const w of watched) {
      look(w);
      w.looked = true;
      if (w.attached) attached.add(w.name);
      else attached.delete(w.name);
      metrics?.set(ATTACHED, ATTACHED_HELP, {
        labels: fields(w) as Record<string, string>,
        value: w.attached ? 1 : 0,
      });
    }
    const now = problems();
    const text = now.join("\n");
    if (text !== lastProblems) {
      lastProblems = text;
      options.onProblems?.(now);
    }
  };

  const tick = () => {
    timer = undefined;
    check();
    if (!stopped) timer = setTimeout(tick, intervalMs);
  };
  if (watched.length > 0) tick();
  return {
    attached,
    problems,
    check,
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}
