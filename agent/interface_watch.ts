/**
 * The interfaces that carry the program: the uplink (`--uplink`) and those
 * facing this node's pods (`--pod-interface`, e.g. a bridge CNI's `cni0`,
 * where the program translates a pod's packets to a VIP and local backends'
 * replies; docs/dataplane.md). The watch asks the kernel whether each still
 * has the program (`Dataplane.attachState`) and attaches it again where not,
 * at once when the kernel notifies a change of one of them (rtnetlink link
 * notifications, `link_notifications.ts`: a burst of them gives one look) and
 * every few seconds all the same (the safety net, should a notification be
 * lost or the socket fail):
 *
 * - an interface not there yet (a CNI makes its bridge with the node's first
 *   pod) is attached when it appears;
 * - one deleted and made again under its name (a CNI restarted, a bond or
 *   VLAN re-made) is a new device without the program: the kernel cut the
 *   pinned tcx link, which is replaced, and a pod interface's new ifindex
 *   replaces the old one in `pod_ifaces`;
 * - one whose program was removed by hand gets it back.
 *
 * It also keeps what the agent's earlier runs left consistent with what this
 * one serves: at start, the program is detached from interfaces whose links
 * are pinned but which are no longer watched (a `--pod-interface` dropped, the
 * uplink renamed), and at every look `pod_ifaces` is left with the ifindexes
 * of the pod interfaces there now only (one deleted, or re-made while the
 * agent was down, leaves an index another device may get).
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
import {
  type LinkEvent,
  type LinkNotifications,
  watchLinkNotifications,
} from "./link_notifications.ts";

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
  /** Detaches the program from an interface no longer served (its pins go). */
  detach(ifname: string, options: { netns?: string }): void;
  /** Interfaces with links pinned by this data plane (any run's). */
  pinnedInterfaces(): string[];
  /** The ifindexes in `pod_ifaces`. */
  podInterfaceIndexes(): number[];
  /** The maps: an ifindex no pod interface has any more leaves `pod_ifaces`. */
  maps: { deletePodInterface(ifindex: number): void };
}

/** Options of {@linkcode watchInterfaces}. */
export interface InterfaceWatchOptions {
  /** Log lines (one per event). */
  log: Logger;
  /** Where the gauges and counters go. */
  metrics?: Registry;
  /** How often the kernel is asked without being told of a change; default 5 s. */
  intervalMs?: number;
  /** Look when the kernel notifies a change of a watched link; default true. */
  linkNotifications?: boolean;
  /**
   * A look waits until the link notifications have been quiet this long (a
   * re-made bridge sends several), at most 10 times as long; default 25 ms.
   */
  debounceMs?: number;
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
  /** Looks now (normally on a link notification, and every `intervalMs`). */
  check(): void;
  /** Stops looking; resolves once the notification socket is closed. */
  stop(): Promise<void>;
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
  /** The ifindex the interface had at the last look (undefined: absent, or not known). */
  seen: number | undefined;
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
    seen: undefined,
    attached: false,
    everAttached: false,
    looked: false,
    attachedByCaller: i.attached ?? false,
    lastError: undefined,
    problem: undefined,
  }));
  const attached = new Set<string>();
  /** Every ifindex this watch marked as facing pods: their removal is no news. */
  const marked = new Set<number>();
  let lastProblems = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  /** What woke the look running now (a field of its log lines). */
  let trigger = "request";

  const label = (w: Watched) => w.pods ? "pod interface" : "uplink";
  const fields = (w: Watched, more: Record<string, unknown> = {}) => ({
    interface: w.name,
    role: w.pods ? "pods" : "uplink",
    ...more,
  });
  const labels = (w: Watched) => ({ interface: w.name, role: w.pods ? "pods" : "uplink" });
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
      w.seen = undefined;
      failed(w, "state unknown", e);
      return false;
    }
    w.seen = state.ifindex;
    if (state.ifindex === undefined) {
      if (w.attached) {
        log(
          "warn",
          `${label(w)} gone; attaching the program when it appears again`,
          fields(w, { trigger }),
        );
      } else if (!w.looked) {
        log("warn", `${label(w)} not present; attaching it when it appears`, fields(w));
      }
      w.attached = false;
      w.lastError = undefined;
      // A bridge CNI makes its bridge with the first pod: one never seen is not a problem yet.
      w.problem = w.pods && !w.everAttached
        ? undefined
        : `not present${w.everAttached ? " since it was deleted" : ""}`;
      return true;
    }
    if (w.attachedByCaller && !w.looked && state.mode !== undefined) {
      w.ifindex = state.ifindex;
      w.attached = w.everAttached = true;
      return true;
    }
    // The first look attaches even where the pins say it is (their links get this
    // agent's program); later ones where the program is missing or on another device.
    if (w.looked && state.mode !== undefined && state.ifindex === w.ifindex) return true;
    const previous = w.everAttached ? w.ifindex : undefined;
    const remade = previous !== undefined && previous !== state.ifindex;
    let mode: string;
    try {
      mode = dp.attach(w.name, { pods: w.pods, ...ns });
    } catch (e) {
      failed(w, "attach failed", e);
      return true;
    }
    if (w.pods) marked.add(state.ifindex);
    const again = w.everAttached;
    if (!again) {
      log("info", `${label(w)} attached`, fields(w, { mode, ifindex: state.ifindex, trigger }));
    } else if (remade) {
      log(
        "warn",
        `${label(w)} was deleted and made again; program attached to the new one`,
        fields(w, { mode, ifindex: state.ifindex, previousIfindex: previous, trigger }),
      );
    } else {
      log(
        "warn",
        `program missing from the ${label(w)}; attached again`,
        fields(w, { mode, trigger }),
      );
    }
    if (again) metrics?.inc(REATTACHES, REATTACHES_HELP, { labels: labels(w) });
    w.ifindex = state.ifindex;
    w.attached = w.everAttached = true;
    w.lastError = undefined;
    w.problem = undefined;
    return true;
  };

  // pod_ifaces keeps the pod interfaces there now: an index left by a deleted one (or
  // by one re-made while the agent was down) would make another device that gets it
  // "face pods". Only after looks that all know their interface's index.
  const prunePodInterfaces = () => {
    const keep = new Set<number>();
    for (const w of watched) if (w.pods && w.seen !== undefined) keep.add(w.seen);
    let indexes: number[];
    try {
      indexes = dp.podInterfaceIndexes();
    } catch (e) {
      log("warn", "pod_ifaces not read", { error: errorText(e) });
      return;
    }
    for (const ifindex of indexes) {
      if (keep.has(ifindex)) continue;
      try {
        dp.maps.deletePodInterface(ifindex);
      } catch (e) {
        log("warn", "pod_ifaces: index not removed", { ifindex, error: errorText(e) });
        continue;
      }
      // an index this watch marked goes with its interface; others were left by an earlier run
      if (!marked.delete(ifindex)) {
        log(
          "info",
          "pod_ifaces: removed an index no pod interface has now (left by an earlier run)",
          {
            ifindex,
          },
        );
      }
    }
  };

  // Links pinned by an earlier run for an interface this one does not serve.
  const detachUnserved = () => {
    let pinned: string[];
    try {
      pinned = dp.pinnedInterfaces();
    } catch (e) {
      log("warn", "pinned links not listed", { error: errorText(e) });
      return;
    }
    const served = new Set(watched.map((w) => w.name));
    for (const name of pinned) {
      if (served.has(name)) continue;
      try {
        dp.detach(name, ns);
        log("warn", "program detached from an interface no longer served; its links unpinned", {
          interface: name,
        });
      } catch (e) {
        log("error", "program not detached from an interface no longer served", {
          interface: name,
          error: errorText(e),
        });
      }
    }
  };

  const problems = () =>
    watched.filter((w) => w.problem !== undefined).map((w) =>
      `${w.name} (${w.pods ? "pods" : "uplink"}): ${w.problem}`
    );

  const check = () => {
    let known = true;
    for (const w of watched) {
      known = look(w) && known;
      w.looked = true;
      if (w.attached) attached.add(w.name);
      else attached.delete(w.name);
      metrics?.set(ATTACHED, ATTACHED_HELP, { labels: labels(w), value: w.attached ? 1 : 0 });
    }
    if (known) prunePodInterfaces();
    const now = problems();
    const text = now.join("\n");
    if (text !== lastProblems) {
      lastProblems = text;
      options.onProblems?.(now);
    }
  };

  const lookFor = (why: string) => {
    trigger = why;
    try {
      check();
    } finally {
      trigger = "request";
    }
  };

  // Link notifications: a look once a burst of them about a watched interface is over.
  const notifications = (options.linkNotifications ?? true) && watched.length > 0;
  const debounceMs = options.debounceMs ?? 25;
  let links: LinkNotifications | undefined;
  let linksError: string | undefined;
  let burst: ReturnType<typeof setTimeout> | undefined;
  let burstStart = 0;
  let lastEvent = 0;
  const concerns = (e: LinkEvent) =>
    e.kind === "lost" || watched.some((w) => w.name === e.name || w.seen === e.ifindex);
  const settle = () => {
    const now = performance.now();
    const quiet = now - lastEvent;
    if (quiet < debounceMs && now - burstStart < 10 * debounceMs) {
      burst = setTimeout(settle, debounceMs - quiet);
      return;
    }
    burst = undefined;
    if (!stopped) lookFor("link notification");
  };
  const onLink = (e: LinkEvent) => {
    if (stopped || !concerns(e)) return;
    lastEvent = performance.now();
    if (burst === undefined) {
      burstStart = lastEvent;
      burst = setTimeout(settle, debounceMs);
    }
  };
  const subscribe = () => {
    try {
      links = watchLinkNotifications(onLink, {
        ...ns,
        onError: (e) => {
          links = undefined;
          linksError = errorText(e);
          log("warn", `link notifications stopped; looking every ${intervalMs} ms until back`, {
            error: linksError,
          });
        },
      });
    } catch (e) {
      const text = errorText(e);
      if (text !== linksError) {
        linksError = text;
        log("warn", `link notifications unavailable; looking every ${intervalMs} ms`, {
          error: text,
        });
      }
      return;
    }
    if (linksError !== undefined) log("info", "link notifications back");
    linksError = undefined;
  };

  let started = false;
  const tick = () => {
    timer = undefined;
    // a subscription that failed is made again here, before the look that covers the gap
    if (notifications && links === undefined) subscribe();
    lookFor(started ? "interval" : "start");
    started = true;
    if (!stopped) timer = setTimeout(tick, intervalMs);
  };
  if (watched.length > 0) {
    detachUnserved();
    tick();
  }
  return {
    attached,
    problems,
    check: () => lookFor("request"),
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      if (burst !== undefined) clearTimeout(burst);
      timer = burst = undefined;
      await links?.stop();
      links = undefined;
    },
  };
}
