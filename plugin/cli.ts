/**
 * The kubectl-blixt command line: parses flags, reads the cluster, renders,
 * and returns the exit code. Everything it prints goes through an
 * {@linkcode Io}, so tests run it in process as well as through main.ts.
 *
 * @module
 */
import { stringify as toYaml } from "yaml";
import { k8s, loadKubeConfig } from "../kube/client.ts";
import type { L4Route } from "../operator/mod.ts";
import { type ClusterView, controllerOf, gatewayKey, isManaged } from "./cluster_view.ts";
import { buildExplanation, explanationTable, explanationTitle } from "./explain.ts";
import {
  ReadError,
  readExplainView,
  readNodesView,
  readServerVersion,
  readStatusView,
  type RouteKindName,
} from "./fetch_view.ts";
import { type Flags, parseFlags, UsageError } from "./flags.ts";
import { buildNodes, nodesTables } from "./nodes.ts";
import { buildStatus, statusTables } from "./status.ts";
import { renderTable, type Table, useColor } from "./table.ts";
import { buildVersion, versionText } from "./version.ts";

/** Exit codes scripts can rely on (README.md lists them). */
export const EXIT = {
  /** Done; also when nothing matched a listing ("No resources found"). */
  ok: 0,
  /** The cluster or the kubeconfig failed us: unreachable, unauthorized, forbidden, no CRDs. */
  error: 1,
  /** The command line is wrong. */
  usage: 2,
  /** The Gateway or route named on the command line does not exist. */
  notFound: 3,
  /** `explain`: the route carries no traffic. */
  noTraffic: 4,
} as const;

/** Where output goes and what the process sees. */
export interface Io {
  /** Appends to stdout. */
  stdout(text: string): void;
  /** Appends to stderr. */
  stderr(text: string): void;
  /** Whether stdout is a terminal. */
  isTerminal: boolean;
  /** Environment. */
  env: { get(name: string): string | undefined };
  /** Clock for ages. */
  now: Date;
}

/** Environment variable that fixes the clock (RFC 3339), for reproducible output. */
export const NOW_ENV = "KUBECTL_BLIXT_NOW";

const FLAGS_HELP = `Flags:
  -A, --all-namespaces    list across all namespaces
      --context string    the kubeconfig context to use
  -h, --help              help for the command
      --kubeconfig string path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)
  -n, --namespace string  the namespace (default: the context's, else "default")
      --no-headers        print tables without their header row
  -o, --output string     table|wide|json|yaml (default "table")
`;

const EXIT_HELP = `Exit codes:
  0 done (also when nothing matched), 1 error from the cluster or kubeconfig,
  2 usage error, 3 named object not found, 4 (explain) the route carries no traffic
`;

const HELP: Record<string, string> = {
  root:
    `kubectl-blixt shows what blixt, the layer-4 Gateway API load balancer, has programmed where.

Usage:
  kubectl blixt COMMAND [flags]

Commands:
  status [GATEWAY]      Gateways, listeners, routes and backends (weight, share, state),
                        programming per node, live counters, and conditions that are not well
  nodes                 Per node: agent ready, tables programmed, map usage, last sync
  explain route NAME    Why a TCPRoute or UDPRoute does or does not carry traffic
  version               Versions of the plugin and the API server

${FLAGS_HELP}
${EXIT_HELP}`,
  status: `Show the routing state of blixt Gateways: one row per backend (and per rejected share),
then each node's programming of the Gateway's RoutingTable, then the conditions that
say something is wrong.

Usage:
  kubectl blixt status [GATEWAY] [-n NAMESPACE | -A] [-o table|wide|json|yaml] [--no-headers]

Examples:
  kubectl blixt status
  kubectl blixt status gw -n apps -o wide
  kubectl blixt status -A -o json

${FLAGS_HELP}
${EXIT_HELP}`,
  nodes: `Show each node's data plane: agent Ready (and Degraded), RoutingTables programmed at their
current generation out of all tables, the fullest BPF map, and the last sync.

Usage:
  kubectl blixt nodes [-o table|wide|json|yaml] [--no-headers]

${FLAGS_HELP}
${EXIT_HELP}`,
  explain: `Explain why a route is or is not carrying traffic: whether it is attached to each
parent Gateway's listeners (and why not), whether an older route on the same listener
shadows it, whether it has ready backends, which share of new flows is rejected, and
whether the nodes have programmed it.

Usage:
  kubectl blixt explain route NAME [-n NAMESPACE] [-o table|json|yaml]
  kubectl blixt explain tcproute/NAME | udproute/NAME | tcproute NAME | udproute NAME

"route" looks up both kinds and explains each it finds.

${FLAGS_HELP}
${EXIT_HELP}`,
  version: `Print the versions of kubectl-blixt, the Deno running it and the API server.

Usage:
  kubectl blixt version [--client] [-o table|json|yaml]

      --client            print the client's version only, without contacting the cluster

${FLAGS_HELP}
${EXIT_HELP}`,
};

const COMMANDS = ["status", "nodes", "explain", "version", "help"];

function usage(io: Io, message: string, command?: string): number {
  io.stderr(`error: ${message}\n`);
  io.stderr(`See 'kubectl blixt ${command ? `${command} ` : ""}--help' for usage.\n`);
  return EXIT.usage;
}

function print(
  io: Io,
  flags: Flags,
  model: unknown,
  tables: () => Table[],
): void {
  if (flags.output === "json") {
    io.stdout(JSON.stringify(model, null, 2) + "\n");
  } else if (flags.output === "yaml") {
    io.stdout(toYaml(model, { lineWidth: 0 })); // 0: never fold long messages
  } else {
    const color = useColor(io.isTerminal, io.env);
    io.stdout(
      tables().map((t) => renderTable(t, { noHeaders: flags.noHeaders, color })).join("\n"),
    );
  }
}

function namespaceOf(flags: Flags, kc: k8s.KubeConfig): string {
  if (flags.namespace !== undefined) return flags.namespace;
  const context = kc.getContextObject(kc.getCurrentContext());
  return context?.namespace || "default";
}

function kubeConfig(flags: Flags): k8s.KubeConfig {
  try {
    return loadKubeConfig({ kubeconfig: flags.kubeconfig, context: flags.context });
  } catch (err) {
    throw new ReadError(
      `error: ${err instanceof Error ? err.message : String(err)}`,
      EXIT.error,
    );
  }
}

/**
 * Runs kubectl-blixt with the arguments after the program name and returns
 * the exit code.
 *
 * @example
 * ```ts
 * const code = await run(["status", "-A"], { stdout: console.log, ... });
 * ```
 */
export async function run(argv: readonly string[], io: Io): Promise<number> {
  let flags: Flags;
  try {
    flags = parseFlags(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      const command = argv.find((a) => COMMANDS.includes(a));
      return usage(io, err.message, command);
    }
    throw err;
  }
  const [command, ...operands] = flags.args;
  if (command === undefined || command === "help") {
    const topic = command === "help" ? operands[0] : undefined;
    io.stdout(HELP[topic !== undefined && topic in HELP ? topic : "root"] ?? "");
    return EXIT.ok;
  }
  if (!COMMANDS.includes(command)) {
    return usage(io, `unknown command "${command}" for "kubectl blixt"`);
  }
  if (flags.help) {
    io.stdout(HELP[command] ?? "");
    return EXIT.ok;
  }
  if (flags.client && command !== "version") return usage(io, "unknown flag: --client", command);
  try {
    switch (command) {
      case "status":
        return await status(flags, operands, io);
      case "nodes":
        return await nodes(flags, operands, io);
      case "explain":
        return await explain(flags, operands, io);
      default:
        return await version(flags, operands, io);
    }
  } catch (err) {
    if (err instanceof ReadError) {
      io.stderr(err.message + "\n");
      return err.exitCode;
    }
    if (err instanceof UsageError) return usage(io, err.message, command);
    throw err;
  }
}

function noneFound(io: Io, namespace: string | undefined): void {
  io.stderr(
    namespace === undefined
      ? "No resources found\n"
      : `No resources found in ${namespace} namespace.\n`,
  );
}

async function status(flags: Flags, operands: string[], io: Io): Promise<number> {
  if (operands.length > 1) throw new UsageError("status takes at most one GATEWAY name");
  const gateway = operands[0];
  if (gateway !== undefined && flags.allNamespaces) {
    throw new UsageError("a GATEWAY name cannot be used with -A/--all-namespaces");
  }
  const kc = kubeConfig(flags);
  const namespace = flags.allNamespaces ? undefined : namespaceOf(flags, kc);
  const read = await readStatusView(kc, { namespace, gateway });
  read.warnings.forEach((w) => io.stderr(w + "\n"));
  const view: ClusterView = read.view;
  if (gateway !== undefined) {
    const g = view.gateways[0];
    if (g === undefined) {
      io.stderr(
        `Error from server (NotFound): gateways.gateway.networking.k8s.io "${gateway}" not found\n`,
      );
      return EXIT.notFound;
    }
    if (!isManaged(g, view)) {
      io.stderr(
        `Warning: Gateway ${gatewayKey(g)} has class ${g.spec.gatewayClassName} (controller ${
          controllerOf(g, view) ?? "unknown"
        }): blixt does not program it\n`,
      );
    }
  } else {
    view.gateways = view.gateways.filter((g) => isManaged(g, view));
  }
  const report = buildStatus(view);
  if (report.gateways.length === 0 && (flags.output === "table" || flags.output === "wide")) {
    noneFound(io, namespace);
    return EXIT.ok;
  }
  print(io, flags, report, () =>
    statusTables(report, {
      wide: flags.output === "wide",
      allNamespaces: flags.allNamespaces,
      now: io.now,
    }));
  return EXIT.ok;
}

async function nodes(flags: Flags, operands: string[], io: Io): Promise<number> {
  if (operands.length > 0) throw new UsageError("nodes takes no arguments");
  const kc = kubeConfig(flags);
  const read = await readNodesView(kc);
  read.warnings.forEach((w) => io.stderr(w + "\n"));
  const report = buildNodes(read.view);
  if (report.nodes.length === 0 && (flags.output === "table" || flags.output === "wide")) {
    noneFound(io, undefined);
    return EXIT.ok;
  }
  print(
    io,
    flags,
    report,
    () => nodesTables(report, { wide: flags.output === "wide", now: io.now }),
  );
  return EXIT.ok;
}

const ROUTE_TYPES: Record<string, readonly RouteKindName[]> = {
  route: ["TCPRoute", "UDPRoute"],
  routes: ["TCPRoute", "UDPRoute"],
  tcproute: ["TCPRoute"],
  tcproutes: ["TCPRoute"],
  udproute: ["UDPRoute"],
  udproutes: ["UDPRoute"],
};

/** `route NAME`, `tcproute/NAME`, `udproute NAME`, ... -> kinds and name. */
export function parseRouteOperands(
  operands: readonly string[],
): { kinds: readonly RouteKindName[]; name: string } {
  const [first, second, ...rest] = operands;
  if (first === undefined) {
    throw new UsageError(
      "explain needs a route: explain route NAME (or tcproute/NAME, udproute/NAME)",
    );
  }
  let type: string, name: string | undefined;
  if (first.includes("/")) {
    [type = "", name] = first.split("/", 2);
    if (second !== undefined) throw new UsageError(`unexpected argument "${second}"`);
  } else {
    type = first;
    name = second;
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  }
  const kinds = ROUTE_TYPES[type.toLowerCase().replace(/\.gateway\.networking\.k8s\.io$/, "")];
  if (kinds === undefined) {
    throw new UsageError(
      `explain knows routes only: "${type}" is not one of route, tcproute, udproute`,
    );
  }
  if (name === undefined || name === "") throw new UsageError(`explain ${type} needs a NAME`);
  return { kinds, name };
}

async function explain(flags: Flags, operands: string[], io: Io): Promise<number> {
  const { kinds, name } = parseRouteOperands(operands);
  if (flags.allNamespaces) throw new UsageError("explain works in one namespace: use -n, not -A");
  const kc = kubeConfig(flags);
  const namespace = namespaceOf(flags, kc);
  const read = await readExplainView(kc, { namespace, name, kinds });
  read.warnings.forEach((w) => io.stderr(w + "\n"));
  if (read.routes.length === 0) {
    const what = kinds.map((k) => `${k.toLowerCase()}s.gateway.networking.k8s.io`).join(", ");
    io.stderr(
      `Error from server (NotFound): ${what} "${name}" not found in namespace "${namespace}"\n`,
    );
    return EXIT.notFound;
  }
  const routes = [...read.routes].sort((a: L4Route, b: L4Route) => a.kind.localeCompare(b.kind));
  const explanation = buildExplanation(routes, read.view);
  if (flags.output === "json" || flags.output === "yaml") {
    print(io, flags, explanation, () => []);
  } else {
    const color = useColor(io.isTerminal, io.env);
    io.stdout(
      explanation.routes.map((e) =>
        `${explanationTitle(e)}\n\n${
          renderTable(explanationTable(e), { noHeaders: flags.noHeaders, color })
        }`
      ).join("\n"),
    );
  }
  return explanation.routes.some((r) => r.carryingTraffic) ? EXIT.ok : EXIT.noTraffic;
}

async function version(flags: Flags, operands: string[], io: Io): Promise<number> {
  if (operands.length > 0) throw new UsageError("version takes no arguments");
  let server: string | undefined;
  if (!flags.client) {
    const kc = kubeConfig(flags);
    try {
      server = await readServerVersion(kc);
    } catch (err) {
      // as kubectl does: the client's version, then the error
      if (flags.output === "table" || flags.output === "wide") {
        io.stdout(versionText(buildVersion(undefined)));
      }
      throw err;
    }
  }
  const report = buildVersion(server);
  if (flags.output === "json" || flags.output === "yaml") print(io, flags, report, () => []);
  else io.stdout(versionText(report));
  return EXIT.ok;
}
