/**
 * Writes this node's DataplaneNode: the object (owned by its Node) and its
 * status, both by server-side apply with field manager `blixt-agent`.
 *
 * @module
 */
import type { RestConfig } from "../kube/kubeconfig.ts";
import { ApiError, METADATA_ONLY, requestJson } from "../kube/rest.ts";
import {
  API_VERSION,
  DATAPLANE_NODE_KIND,
  DATAPLANE_NODE_PLURAL,
  type DataplaneNodeStatus,
  GROUP,
  PART_OF_LABEL,
  VERSION,
} from "../api/mod.ts";

/** Field manager of everything the agent writes. */
export const FIELD_MANAGER = "blixt-agent";

/** What the agent learns about its Node. */
export interface NodeInfo {
  /** Node uid, for the owner reference (absent when the Node is not found). */
  uid?: string;
  /** InternalIP (else the first address), the source of flows to remote backends. */
  address?: string;
}

/** Where status goes: the API server, or a recorder in tests. */
export interface StatusWriter {
  /** Creates or updates the DataplaneNode object itself. */
  ensure(uplink: string): Promise<void>;
  /** Replaces the agent's part of the status. */
  write(status: DataplaneNodeStatus): Promise<void>;
}

/** Reads the Node `name`. */
export async function readNode(kc: RestConfig, name: string): Promise<NodeInfo> {
  interface Node {
    metadata?: { uid?: string };
    status?: { addresses?: { type: string; address: string }[] };
  }
  try {
    const node = await requestJson<Node>(kc, `/api/v1/nodes/${encodeURIComponent(name)}`);
    const addrs = node.status?.addresses ?? [];
    const address = (addrs.find((a) => a.type === "InternalIP") ?? addrs[0])?.address;
    return {
      ...(node.metadata?.uid ? { uid: node.metadata.uid } : {}),
      ...(address ? { address } : {}),
    };
  } catch (e) {
    if (e instanceof ApiError && e.code === 404) return {};
    throw e;
  }
}

/** Server-side apply of `body` at `path` as `blixt-agent`, taking over conflicting fields. */
async function apply(kc: RestConfig, path: string, body: unknown): Promise<void> {
  await requestJson(kc, path, {
    method: "PATCH",
    query: { fieldManager: FIELD_MANAGER, force: true },
    body,
    contentType: "application/apply-patch+yaml",
    // the answer is not read: no need for the API server to encode the whole object
    accept: METADATA_ONLY,
  });
}

/**
 * A {@linkcode StatusWriter} for DataplaneNode `node` through the API server;
 * `info` (or what it returns, read on every `ensure`) gives the owner.
 */
export function kubeStatusWriter(
  kc: RestConfig,
  node: string,
  nodeInfo: NodeInfo | (() => NodeInfo),
): StatusWriter {
  const path = `/apis/${GROUP}/${VERSION}/${DATAPLANE_NODE_PLURAL}/${encodeURIComponent(node)}`;
  return {
    ensure: async (uplink) => {
      const info = typeof nodeInfo === "function" ? nodeInfo() : nodeInfo;
      await apply(kc, path, {
        apiVersion: API_VERSION,
        kind: DATAPLANE_NODE_KIND,
        metadata: {
          name: node,
          labels: { ...PART_OF_LABEL },
          ...(info.uid
            ? {
              ownerReferences: [{ apiVersion: "v1", kind: "Node", name: node, uid: info.uid }],
            }
            : {}),
        },
        spec: { nodeName: node, uplink },
      });
    },
    write: async (status) => {
      await apply(kc, `${path}/status`, {
        apiVersion: API_VERSION,
        kind: DATAPLANE_NODE_KIND,
        metadata: { name: node },
        status,
      });
    },
  };
}
