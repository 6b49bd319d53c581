/**
 * `deno task agent --node NAME [--kubeconfig PATH] [--uplink IFACE]
 * [--pod-interface IFACE]... [--bpffs DIR] [--metrics-port N] [--node-address IP]
 * [--status-interval-ms N]`:
 * the node daemon. Loads (or adopts) the pinned data plane, attaches it to the
 * uplink (and to the interfaces facing the node's pods: hairpin, and local
 * backends' replies past the stack), and keeps the maps equal to the
 * cluster's RoutingTables.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { shareConnections } from "../kube/connections.ts";
import { AGENT_LEASE_DURATION_SECONDS, AGENT_LEASE_RENEW_INTERVAL_SECONDS } from "../api/mod.ts";
import { Agent, DEFAULT_STATUS_INTERVAL_MS } from "./agent.ts";
import { LivenessLease } from "./liveness_lease.ts";
import { type NodeState, NodeWatch } from "./node_watch.ts";
import { Dataplane, DEFAULT_OBJECT } from "./bpf/loader.ts";
import { serveEndpoints } from "./http_server.ts";
import { errorText, jsonLogger } from "./log.ts";
import { Registry } from "./metrics.ts";
import { kubeStatusWriter, readNode } from "./node_status_writer.ts";
import { kubeConfigFor, kubeTableSource } from "./table_source.ts";
import { watchInterfaces } from "./interface_watch.ts";

const USAGE = `usage: deno task agent --node NAME [--kubeconfig PATH] [--uplink IFACE]
  [--pod-interface IFACE]...
  [--bpffs DIR] [--metrics-port N] [--metrics-address ADDR] [--node-address IP]
  [--object PATH] [--log-level debug|info|warn|error]
  [--lease-namespace NS] [--lease-duration SECONDS] [--lease-renew-interval SECONDS]
  [--snat-ports MIN-MAX] [--status-interval-ms N]`;

/**
 * Parses the agent's arguments; throws on an unknown option, as at start
 * (manifests/agent.yaml's args must parse: agent/main_test.ts).
 */
export function parseAgentArgs(args: string[]) {
  return parseArgs({
    args,
    options: {
      node: { type: "string" },
      kubeconfig: { type: "string" },
      uplink: { type: "string", default: "eth0" },
      "pod-interface": { type: "string", multiple: true, default: [] as string[] },
      bpffs: { type: "string", default: "/sys/fs/bpf" },
      "metrics-port": { type: "string", default: "9464" },
      "metrics-address": { type: "string", default: "0.0.0.0" },
      "node-address": { type: "string" },
      object: { type: "string", default: DEFAULT_OBJECT },
      "log-level": { type: "string", default: "info" },
      "snat-ports": { type: "string", default: "61000-65535" },
      "status-interval-ms": { type: "string", default: String(DEFAULT_STATUS_INTERVAL_MS) },
      "lease-namespace": {
        type: "string",
        default: Deno.env.get("POD_NAMESPACE") ?? "blixt-system",
      },
      "lease-duration": { type: "string", default: String(AGENT_LEASE_DURATION_SECONDS) },
      "lease-renew-interval": {
        type: "string",
        default: String(AGENT_LEASE_RENEW_INTERVAL_SECONDS),
      },
      help: { type: "boolean" },
    },
  }).values;
}

async function main(args: string[]): Promise<number> {
  const values = parseAgentArgs(args);
  if (values.help || !values.node) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const node = values.node;
  const level = values["log-level"] as "debug" | "info" | "warn" | "error";
  const log = jsonLogger({ component: "agent", node }, { minLevel: level });
  const kc = await kubeConfigFor(values.kubeconfig);
  // Lease renewals and status writes reuse kept-alive connections (no TLS handshake each).
  const connections = shareConnections(kc);
  const info = await readNode(kc, node);
  let nodeState: NodeState = { found: info.uid !== undefined, ...info };
  let nodeAddr = values["node-address"] ?? info.address;
  if (!nodeAddr) throw new Error(`node ${node} has no address; pass --node-address`);

  // Source ports of flows to backends on other nodes (per backend ip:port and node).
  const snat = /^(\d+)-(\d+)$/.exec(values["snat-ports"]);
  if (!snat) throw new Error(`--snat-ports ${values["snat-ports"]}: want MIN-MAX`);
  const snatPorts: [number, number] = [Number(snat[1]), Number(snat[2])];

  // Least time between two DataplaneNode status writes: changes within it are written together.
  const statusIntervalMs = Number(values["status-interval-ms"]);
  if (!(statusIntervalMs >= 0)) {
    throw new Error(`--status-interval-ms ${values["status-interval-ms"]}: want a number >= 0`);
  }

  const pinDir = `${values.bpffs}/blixt`;
  const dp = Dataplane.load({ pinDir, objectPath: values.object });
  const mode = dp.attach(values.uplink);
  dp.maps.setConfig({ nodeAddr, snatPorts });
  log("info", "data plane attached", { uplink: values.uplink, mode, pinDir, nodeAddr });

  const durationSeconds = Number(values["lease-duration"]);
  const renewIntervalSeconds = Number(values["lease-renew-interval"]);
  if (
    !(durationSeconds > 0 && renewIntervalSeconds > 0 && renewIntervalSeconds < durationSeconds)
  ) {
    throw new Error("--lease-renew-interval must be positive and below --lease-duration");
  }
  // The operator counts this node's agent as running only while this Lease is held.
  const lease = new LivenessLease(kc, {
    namespace: values["lease-namespace"],
    node,
    identity: Deno.env.get("POD_NAME") ?? `${Deno.hostname()}-${Deno.pid}`,
    durationSeconds,
    renewIntervalSeconds,
    log,
  }).start();

  const metrics = new Registry();
  const agent = new Agent({
    node,
    uplink: values.uplink,
    maps: dp.maps,
    source: kubeTableSource(kc, { node, log }),
    status: kubeStatusWriter(kc, node, () => nodeState),
    log,
    metrics,
    statusIntervalMs,
    // steps of ~2-8 ms at 262,144 entries (agent/bpf/conntrack_sweep_test.ts prints them)
    sweepConntrack: () => dp.maps.sweepConntrackInSteps({ readChunk: 2048, deleteChunk: 2048 }),
  });
  // Its own Node: a new address goes to the data plane, a new uid re-owns the DataplaneNode.
  const nodeWatch = new NodeWatch(kc, node, nodeState, {
    log: ({ level, msg, ...fields }) => log(level, msg, fields),
    onChange: (state) => {
      nodeState = state;
      log(state.found ? "info" : "warn", state.found ? "Node changed" : "Node not found", {
        ...(state.uid ? { uid: state.uid } : {}),
        ...(state.address ? { address: state.address } : {}),
      });
      if (!values["node-address"] && state.address && state.address !== nodeAddr) {
        nodeAddr = state.address;
        dp.maps.setConfig({ nodeAddr, snatPorts });
        log("info", "node address changed; flows to remote backends now leave from it", {
          nodeAddr,
        });
      }
      agent.nodeChanged(state);
    },
  }).start();
  if (!nodeState.found) agent.nodeChanged({ found: false });
  // The uplink and pod interfaces, looked at on link notifications and every 5 s: one deleted and
  // made again gets the program again (a re-made cni0, bond or VLAN); one without it makes the
  // node Degraded.
  const interfaces = watchInterfaces(dp, [
    { name: values.uplink, attached: true },
    ...values["pod-interface"].map((name) => ({ name, pods: true })),
  ], { log, metrics, onProblems: (problems) => agent.interfacesChanged(problems) });
  const server = serveEndpoints(agent, metrics, {
    port: Number(values["metrics-port"]),
    hostname: values["metrics-address"],
    onListen: (port) => log("info", "serving /metrics /healthz /readyz", { port }),
  });
  const done = Promise.withResolvers<void>();
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(sig, () => done.resolve());
  }
  await Promise.race([agent.start(), done.promise]);
  await done.promise;
  log("info", "stopping; maps and links stay pinned and keep forwarding");
  // The Lease first: the operator flips the node's Gateways at once, not a lease duration later.
  await lease.stop({ release: true });
  await interfaces.stop();
  await nodeWatch.stop();
  await agent.stop({ report: true });
  await server.shutdown();
  dp.close();
  connections.close();
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    console.error(
      JSON.stringify({ time: new Date().toISOString(), level: "error", msg: errorText(e) }),
    );
    Deno.exit(1);
  }
}
