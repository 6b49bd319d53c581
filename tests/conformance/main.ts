/**
 * `deno task conformance [--keep] [--run-test NAME]`: the Gateway API
 * conformance suite (GATEWAY-TCP and GATEWAY-UDP of the version pinned in
 * `tests/conformance/go.mod`, provisional tests included) against blixt on
 * the local cluster: brings up cluster `conformance` (2 nodes, pods served
 * by the pod runner), runs the operator and an agent per node, runs
 * `go test` of `tests/conformance/`, writes the report YAML to
 * `conformance/reports/` and the suite's log to `.cache/conformance.log`,
 * and prints a summary. Exits non-zero when a test
 * failed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import { startSystem, stopSystem, type System } from "../e2e/system.ts";
import { Cluster } from "../cluster/cluster.ts";
import { captureWhileFailing, ProbeWatch, STUCK_MS } from "./probe_watch.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    keep: { type: "boolean", default: false },
    "run-test": { type: "string" },
    name: { type: "string", default: "conformance" },
  },
});

const root = new URL("../../", import.meta.url).pathname;
const started = performance.now();
const step = (line: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}`);

/** The pinned suite version, read from go.mod. */
async function suiteVersion(): Promise<string> {
  const mod = await Deno.readTextFile(`${root}tests/conformance/go.mod`);
  return /sigs\.k8s\.io\/gateway-api\/conformance (v\S+)/.exec(mod)?.[1] ?? "unknown";
}

async function blixtVersion(): Promise<string> {
  const deno = JSON.parse(await Deno.readTextFile(`${root}deno.json`)) as { version?: string };
  return `v${deno.version ?? "0.0.0"}`;
}

interface ProfileReport {
  name: string;
  core?: {
    result: string;
    statistics?: Record<string, number>;
    failedTests?: string[];
    skippedTests?: string[];
  };
  extended?: {
    result: string;
    statistics?: Record<string, number>;
    failedTests?: string[];
    skippedTests?: string[];
    supportedFeatures?: string[];
    unsupportedFeatures?: string[];
  };
}

/** Prints the report's profiles, their statistics and failed/skipped tests. */
function summarize(reportYaml: string): boolean {
  const report = parseYaml(reportYaml) as { profiles?: ProfileReport[] | null };
  if (!report.profiles?.length) {
    console.log("no profile has results: the suite stopped before its tests (see the log)");
    return false;
  }
  let ok = true;
  for (const p of report.profiles ?? []) {
    for (const kind of ["core", "extended"] as const) {
      const r = p[kind];
      if (!r) continue;
      const s = r.statistics ?? {};
      console.log(
        `${p.name} ${kind}: ${r.result} (${s["Passed"] ?? 0} passed, ${s["Failed"] ?? 0} failed, ${
          s["Skipped"] ?? 0
        } skipped)`,
      );
      for (const t of r.failedTests ?? []) console.log(`  failed:  ${t}`);
      for (const t of r.skippedTests ?? []) console.log(`  skipped: ${t}`);
      if (r.result === "failure") ok = false;
    }
  }
  return ok;
}

/**
 * After a failed run, what the cluster knew (its processes' logs; pods, EndpointSlices,
 * RoutingTables and DataplaneNodes as YAML) goes to `.cache/conformance-failure/` before the
 * cluster and its directory go: a flake seen once in CI can then be read, not guessed.
 */
async function keepEvidence(cluster: Cluster): Promise<void> {
  const dest = `${root}.cache/conformance-failure`;
  try {
    await Deno.remove(dest, { recursive: true }).catch(() => {});
    await Deno.mkdir(dest, { recursive: true });
    const copy = async (dir: string, rel: string): Promise<void> => {
      for await (const e of Deno.readDir(dir)) {
        const from = `${dir}/${e.name}`, to = `${rel}/${e.name}`;
        if (e.isDirectory) await copy(from, to);
        else if (e.isFile && e.name.endsWith(".log")) {
          await Deno.mkdir(`${dest}/${rel}`, { recursive: true });
          await Deno.copyFile(from, `${dest}/${to}`);
        }
      }
    };
    await copy(cluster.dir, ".");
    const objects = "pods,endpointslices,routingtables,dataplanenodes,gateways,udproutes,tcproutes";
    const yaml = await cluster.kubectl(["get", objects, "-A", "-o", "yaml"]);
    await Deno.writeTextFile(`${dest}/objects.yaml`, yaml);
    step(`evidence of the failed run: ${dest.slice(root.length)}`);
    // The CI log is all a CI failure leaves: the pods and the components' complaints go there too.
    console.log(await cluster.kubectl(["get", "pods", "-A", "-o", "wide"]));
    for (const log of ["operator.log", "agent-node-1.log", "agent-node-2.log"]) {
      const text = await Deno.readTextFile(`${dest}/${log}`).catch(() => "");
      const complaints = text.split("\n").filter((l) => /"level":"(warn|error)"/.test(l));
      console.log(`${log}: ${complaints.length} warn/error lines, the last 20:`);
      for (const l of complaints.slice(-20)) console.log(`  ${l.slice(0, 400)}`);
    }
  } catch (e) {
    step(`could not keep the failed run's evidence: ${e instanceof Error ? e.message : e}`);
  }
}

let system: System | undefined;
let code = 1;
try {
  step(`bringing up cluster ${values.name} with blixt`);
  system = await startSystem({ name: values.name, nodes: 2, pods: true, log: step });
  const cluster = system.cluster;
  if (!(cluster instanceof Cluster)) {
    throw new Error("the conformance run needs the local cluster (unset BLIXT_E2E_KUBECONFIG)");
  }
  const version = await suiteVersion();
  // A partial run (--run-test) is not a report to publish: it goes to .cache.
  const dir = values["run-test"]
    ? `${root}.cache/conformance-reports/${version}`
    : `${root}conformance/reports/${version}`;
  await Deno.mkdir(dir, { recursive: true });
  const report = `${dir}/blixt-${await blixtVersion()}-default-report.yaml`;
  step(`running the Gateway API ${version} conformance suite (GATEWAY-TCP, GATEWAY-UDP)`);
  const pool = cluster.plan.gatewayPool.replace(/\.0\/24$/, "");
  const args = [
    "test",
    "-count=1",
    "-timeout=80m",
    "-v",
    ".",
    "-run",
    "TestConformance",
    "-args",
    `-blixt-report=${report}`,
    `-blixt-version=${await blixtVersion()}`,
    // GatewayStaticAddresses: one address of blixt's pool, one outside every pool.
    `-usable-address=${pool}.250`,
    `-unusable-address=${cluster.plan.serviceCIDR.replace(/\.0\/24$/, "")}.250`,
    ...(values["run-test"] ? [`-run-test=${values["run-test"]}`] : []),
  ];
  // kept outside the cluster's directory, which goes with the cluster
  await Deno.mkdir(`${root}.cache`, { recursive: true });
  const logFile = `${root}.cache/conformance.log`;
  await Deno.writeTextFile(logFile, "");
  const child = new Deno.Command("go", {
    args,
    cwd: `${root}tests/conformance`,
    env: { KUBECONFIG: system.cluster.kubeconfig, GOFLAGS: "-mod=readonly" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = await Deno.open(logFile, { create: true, append: true });
  const lines: string[] = [];
  // A probe failing for STUCK_MS: the cluster is recorded now, before the suite deletes the test's
  // objects (probe_watch.ts).
  const stuckDir = `${root}.cache/conformance-stuck`;
  await Deno.remove(stuckDir, { recursive: true }).catch(() => {});
  const watch = new ProbeWatch();
  const captures: Promise<void>[] = [];
  const capture = (stuck: NonNullable<ReturnType<ProbeWatch["line"]>>) => {
    const dir = `${stuckDir}/${captures.length + 1}-${stuck.test.replaceAll("/", "-")}`;
    step(`probes of ${stuck.test} failing for ${STUCK_MS / 1000} s: recording the cluster`);
    captures.push(
      captureWhileFailing(cluster, dir, stuck).then(
        (summary) => {
          step(`recorded in ${dir.slice(root.length)}:`);
          for (const l of summary.split("\n")) console.log(`  ${l}`);
        },
        (e) => step(`could not record the cluster: ${e instanceof Error ? e.message : e}`),
      ),
    );
  };
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of stream) {
      await out.write(chunk);
      rest += decoder.decode(chunk, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop() ?? "";
      for (const line of parts) {
        const stuck = watch.line(line, performance.now());
        if (stuck) capture(stuck);
        // Test results, not the suite's request-by-request logs.
        if (/^\s*--- (PASS|FAIL|SKIP)|^(PASS|FAIL|ok)\b/.test(line)) {
          lines.push(line);
          console.log(line);
        }
      }
    }
  };
  await Promise.all([pump(child.stdout), pump(child.stderr)]);
  const status = await child.status;
  await Promise.all(captures);
  out.close();
  step(`go test exited ${status.code}; full log: ${logFile}`);
  let passed = false;
  try {
    const yaml = await Deno.readTextFile(report);
    step(`report: ${report.slice(root.length)}`);
    passed = summarize(yaml);
  } catch (e) {
    console.log(`no report written (${e instanceof Error ? e.message : e})`);
  }
  code = status.code === 0 && passed ? 0 : 1;
  if (code !== 0) await keepEvidence(cluster);
} finally {
  if (values.keep && system) {
    step(`left running: KUBECONFIG=${system.cluster.kubeconfig}`);
  } else {
    await stopSystem(system, values.name);
    step(`cluster ${values.name} is down`);
  }
}
Deno.exit(code);
