/**
 * The agent's watch on its own Node (list+watch with a field selector on the
 * name). What the agent takes from it, and why:
 *
 * - the InternalIP (else the first address): the source address of flows to
 *   backends on other nodes. A changed address is written to the data plane's
 *   config at once (unless `--node-address` pins it), so SNAT never uses an
 *   address the node no longer has;
 * - the uid: the DataplaneNode is owned by the Node, so a Node deleted and
 *   registered again (a new uid) gets its DataplaneNode re-owned, and one that
 *   appears after the agent started gets the owner it lacked;
 * - whether it exists: a deleted Node makes the DataplaneNode say
 *   `Degraded=True/NodeNotFound`; the maps are kept (traffic may still come).
 *
 * Cordoning and readiness change nothing here: the data plane forwards what
 * reaches it whatever the kubelet says, and the operator, which reads the
 * Node itself, stops waiting for a NotReady node.
 *
 * @module
 */
import type { V1Node } from "@kubernetes/client-node";
import type { k8s } from "../kube/client.ts";
import type { RestConfig } from "../kube/kubeconfig.ts";
import { Informer } from "../kube/informer.ts";
import type { Log } from "../kube/log.ts";
import type { NodeInfo } from "./node_status_writer.ts";

/** What the agent reads of its Node; `found: false` once it is deleted. */
export interface NodeState extends NodeInfo {
  /** Whether the Node exists. */
  found: boolean;
}

/** The part of a Node the agent uses. */
export function nodeInfoOf(node: V1Node): NodeInfo {
  const addrs = node.status?.addresses ?? [];
  const address = (addrs.find((a) => a.type === "InternalIP") ?? addrs[0])?.address;
  return {
    ...(node.metadata?.uid ? { uid: node.metadata.uid } : {}),
    ...(address ? { address } : {}),
  };
}

/** Options of {@linkcode NodeWatch}. */
export interface NodeWatchOptions {
  /** Called with the new state whenever its uid, address or existence changes. */
  onChange: (state: NodeState) => void;
  /** Log lines of the informer. */
  log?: Log;
}

/** Follows one Node and reports the changes the agent acts on. */
export class NodeWatch {
  readonly #informer: Informer<V1Node & k8s.KubernetesObject>;
  readonly #options: NodeWatchOptions;
  #last: NodeState | undefined;

  /** A watch of Node `name` (not started); `initial` is what the agent read at start. */
  constructor(kc: RestConfig, name: string, initial: NodeState, options: NodeWatchOptions) {
    this.#options = options;
    this.#last = initial;
    this.#informer = new Informer(kc, { apiVersion: "v1", plural: "nodes" }, {
      fieldSelector: `metadata.name=${name}`,
      ...(options.log ? { log: options.log } : {}),
    });
    this.#informer.on("add", (n) => this.#seen({ found: true, ...nodeInfoOf(n) }));
    this.#informer.on("update", (n) => this.#seen({ found: true, ...nodeInfoOf(n) }));
    this.#informer.on("delete", () => this.#seen({ found: false }));
  }

  /** Resolves once the Node has been listed (then a missing Node has been reported). */
  get synced(): Promise<void> {
    return this.#informer.synced;
  }

  /** What was last seen. */
  get state(): NodeState | undefined {
    return this.#last;
  }

  /** Starts the watch; returns it. */
  start(): this {
    this.#informer.start();
    // the first list finding nothing: the Node was deleted before the watch began
    this.#informer.synced.then(() => {
      if (this.#informer.list().length === 0) this.#seen({ found: false });
    }, () => {});
    return this;
  }

  /** Stops the watch. */
  async stop(): Promise<void> {
    await this.#informer.stop();
  }

  #seen(state: NodeState): void {
    const last = this.#last;
    if (
      last && last.found === state.found && last.uid === state.uid &&
      last.address === state.address
    ) return;
    this.#last = state;
    this.#options.onChange(state);
  }
}
