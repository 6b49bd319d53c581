/**
 * Writes this node's DataplaneNode: the object (owned by its Node) and its
 * status, both by server-side apply with field manager `blixt-agent`.
 *
 * @module
 */
import { applyObject, k8s } from "../kube/client.ts";
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
export async function readNode(kc: k8s.KubeConfig, name: string): Promise<NodeInfo> {
  const api = kc.makeApiClient(k8s.CoreV1Api);
  try {
    const node = await api.readNode({ name });
    const addrs = node.status?.addresses ?? [];
    const address = (addrs.find((a) => a.type === "InternalIP") ?? addrs[0])?.address;
    return {
      ...(node.metadata?.uid ? { uid: node.metadata.uid } : {}),
      ...(address ? { address } : {}),
    };
  } catch (e) {
    if (e instanceof k8s.ApiException && e.code === 404) return {};
    throw e;
  }
}

/**
 * A {@linkcode StatusWriter} for DataplaneNode `node` through the API server;
 * `info` (or what it returns, read on every `ensure`) gives the owner.
 */
export function kubeStatusWriter(
  kc: k8s.KubeConfig,
  node: string,
  nodeInfo: NodeInfo | (() => NodeInfo),
): StatusWriter {
  const api = kc.makeApiClient(k8s.CustomObjectsApi);
  return {
    ensure: async (uplink) => {
      const info = typeof nodeInfo === "function" ? nodeInfo() : nodeInfo;
      await applyObject(kc, {
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
      }, { fieldManager: FIELD_MANAGER, force: true });
    },
    write: async (status) => {
      await api.patchClusterCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          plural: DATAPLANE_NODE_PLURAL,
          name: node,
          body: {
            apiVersion: API_VERSION,
            kind: DATAPLANE_NODE_KIND,
            metadata: { name: node },
            status,
          },
          fieldManager: FIELD_MANAGER,
          force: true,
        },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.ServerSideApply),
      );
    },
  };
}
