/**
 * `deno task cluster:up [--nodes N] [--name NAME] [--channel experimental|standard] [--pods]`
 * and `deno task cluster:down [--name NAME]`.
 *
 * `up` is idempotent and prints `KUBECONFIG=<absolute path>` as the last line
 * of its standard output; progress goes to standard error.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { clusterDown, clusterUp, DEFAULT_NAME } from "./cluster.ts";
import type { GatewayApiChannel } from "./binaries.ts";

const usage = `usage:
  deno task cluster:up [--nodes N] [--name NAME] [--channel experimental|standard] [--pods]
  deno task cluster:down [--name NAME]`;

function fail(message: string): never {
  console.error(`cluster: ${message}\n${usage}`);
  Deno.exit(2);
}

if (import.meta.main) {
  const [verb, ...rest] = Deno.args;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      options: {
        name: { type: "string", default: DEFAULT_NAME },
        nodes: { type: "string" },
        channel: { type: "string" },
        pods: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    fail((e as Error).message);
  }
  const { values } = parsed;
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  const started = performance.now();
  const log = (line: string) =>
    console.error(
      `[${((performance.now() - started) / 1000).toFixed(1)}s] ${line}`,
    );
  try {
    if (verb === "up") {
      const nodes = values.nodes === undefined ? undefined : Number(values.nodes);
      if (nodes !== undefined && !Number.isInteger(nodes)) {
        fail(`--nodes ${values.nodes}`);
      }
      const channel = values.channel as GatewayApiChannel | undefined;
      if (
        channel !== undefined && channel !== "experimental" &&
        channel !== "standard"
      ) {
        fail(`--channel must be experimental or standard, not ${channel}`);
      }
      const cluster = await clusterUp({
        name: values.name,
        ...(nodes === undefined ? {} : { nodes }),
        ...(channel === undefined ? {} : { channel }),
        ...(values.pods ? { pods: true } : {}),
        log,
      });
      log(`cluster ${cluster.name} is up: API server ${cluster.server}`);
      console.log(`KUBECONFIG=${cluster.kubeconfig}`);
    } else if (verb === "down") {
      await clusterDown(values.name, { log });
    } else {
      fail(`unknown command ${verb ?? "(none)"}`);
    }
  } catch (e) {
    console.error(`cluster ${verb} failed: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
