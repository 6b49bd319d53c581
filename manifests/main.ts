/**
 * The command line of `deno task deploy` and `deno task undeploy`.
 *
 * ```sh
 * deno task deploy [--kubeconfig PATH] [--context NAME] [--image-tag T] [--registry R]
 *                  [--gateway-api-channel experimental|standard] [--timeout SECONDS] [--dry-run]
 * deno task undeploy [--kubeconfig PATH] [--context NAME] [--crds]
 * ```
 *
 * Exit codes: 0 done, 1 failed (the message says what), 2 bad usage.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadKubeConfig } from "../kube/client.ts";
import { deploy, errorText, undeploy } from "./deploy.ts";

const USAGE = `Usage:
  deno task deploy [--kubeconfig PATH] [--context NAME] [--image-tag T] [--registry R]
                   [--gateway-api-channel experimental|standard] [--timeout SECONDS] [--dry-run]
  deno task undeploy [--kubeconfig PATH] [--context NAME] [--crds]

deploy    installs the Gateway API CRDs when the cluster lacks them or has an older
          bundle (never downgrades), blixt's CRDs and manifests (server-side apply,
          field manager blixt-deploy), and waits for the operator and agents where
          nodes can run pods. Running it again changes nothing.
undeploy  removes blixt (operator, agents, their state, GatewayClass, RBAC, namespace);
          blixt's CRDs only with --crds. The Gateway API CRDs stay.

Options:
  --kubeconfig PATH            kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)
  --context NAME               kubeconfig context (default: the current one)
  --image-tag T                tag of the operator and agent images (default: blixt's version)
  --registry R                 registry and path of the images (default: ghcr.io/blixt-dev)
  --gateway-api-channel C      channel to install (default: the cluster's, else experimental)
  --timeout SECONDS            how long to wait for readiness (default: 180)
  --dry-run                    server-side dry run: validate and report, change nothing
  --crds                       (undeploy) also delete blixt's CRDs and all their objects
  -h, --help                   this text
`;

class UsageError extends Error {}

/** Runs the command of `args` (`deploy ...` or `undeploy ...`); returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        kubeconfig: { type: "string" },
        context: { type: "string" },
        "image-tag": { type: "string" },
        registry: { type: "string" },
        "gateway-api-channel": { type: "string" },
        timeout: { type: "string" },
        "dry-run": { type: "boolean" },
        crds: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const [command, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`unexpected argument ${extra[0]}`);
    const channel = values["gateway-api-channel"];
    if (channel !== undefined && channel !== "experimental" && channel !== "standard") {
      throw new UsageError(`--gateway-api-channel must be experimental or standard`);
    }
    const timeout = values.timeout === undefined ? 180 : Number(values.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0) {
      throw new UsageError(`--timeout must be a number of seconds`);
    }
    const log = (line: string) => console.log(line);
    if (command === "deploy") {
      if (values.crds) throw new UsageError("--crds is an option of undeploy");
      const kc = loadKubeConfig({ kubeconfig: values.kubeconfig, context: values.context });
      await deploy(kc, {
        imageTag: values["image-tag"],
        registry: values.registry,
        dryRun: values["dry-run"],
        gatewayApiChannel: channel,
        timeoutMs: timeout * 1000,
        log,
      });
      return 0;
    }
    if (command === "undeploy") {
      for (const flag of ["image-tag", "registry", "gateway-api-channel", "dry-run"] as const) {
        if (values[flag] !== undefined) throw new UsageError(`--${flag} is an option of deploy`);
      }
      const kc = loadKubeConfig({ kubeconfig: values.kubeconfig, context: values.context });
      await undeploy(kc, { crds: values.crds, log });
      return 0;
    }
    throw new UsageError(command ? `unknown command ${command}` : "deploy or undeploy?");
  } catch (err) {
    if (
      err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      console.error(`error: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    console.error(`error: ${errorText(err)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
