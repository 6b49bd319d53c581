/**
 * `deno task setup`: makes sure this machine has what blixt's tests, demo
 * and benchmarks need, installs what is missing, and does nothing (quickly)
 * when everything is there. Every other task that needs the machine calls it.
 *
 * - Debian packages (apt-get, as root): compilers and tools for the BPF
 *   program, iproute2, traffic tools, nftables, openssl;
 * - bpffs mounted at /sys/fs/bpf, and the BPF program compiled (bpf/blixt.o);
 * - the npm packages of deno.json (into Deno's cache, as deno.lock pins them);
 * - the local cluster's binaries, built from their Go modules (cached);
 * - the Gateway API CRDs at the pinned version.
 *
 * @module
 */

import { ensureKubeBinary, gatewayApiCrdDir } from "./cluster/binaries.ts";
import { ensureImageBinaries } from "./cluster/images.ts";
import { run } from "./cluster/host.ts";
import { buildBpf } from "../bpf/build.ts";
import { ensureBpffs } from "../agent/bpf/loader.ts";

/** Debian packages the project needs (Debian 12 names). */
export const DEBIAN_PACKAGES = [
  "clang",
  "llvm",
  "libbpf-dev",
  "libbpf1",
  "bpftool",
  "iproute2",
  "ethtool",
  "iperf3",
  "nftables",
  "openssl",
  "kmod",
  "procps",
] as const;

const repoRoot = new URL("../", import.meta.url).pathname;

/** Debian packages of `packages` that are not installed. */
export async function missingDebianPackages(
  packages: readonly string[],
): Promise<string[]> {
  const res = await run(
    ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", ...packages],
    { allowFailure: true },
  );
  const installed = new Set(
    res.stdout.split("\n")
      .filter((l) => l.endsWith(" installed"))
      .map((l) => l.split(" ")[0]),
  );
  return packages.filter((p) => !installed.has(p));
}

async function ensureDebianPackages(
  log: (line: string) => void,
): Promise<void> {
  const missing = await missingDebianPackages(DEBIAN_PACKAGES);
  if (missing.length === 0) {
    log(`Debian packages: all ${DEBIAN_PACKAGES.length} present`);
    return;
  }
  if (Deno.uid() !== 0) {
    throw new Error(
      `missing Debian packages ${missing.join(" ")}; run as root or apt-get install them`,
    );
  }
  log(`installing Debian packages: ${missing.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  await run(["apt-get", "update", "-qq"], { env });
  await run([
    "apt-get",
    "install",
    "-y",
    "-qq",
    "--no-install-recommends",
    ...missing,
  ], {
    env,
  });
}

async function ensureNpmPackages(log: (line: string) => void): Promise<void> {
  await run([Deno.execPath(), "install", "--frozen"], { cwd: repoRoot });
  log("npm packages cached (deno.lock)");
}

/** Puts the cluster's kubectl on PATH when the machine has none. */
async function ensureKubectl(kube: string, log: (line: string) => void): Promise<void> {
  const found = await run(["sh", "-c", "command -v kubectl"], { allowFailure: true });
  if (found.code === 0) return;
  await Deno.symlink(kube, "/usr/local/bin/kubectl");
  log(`kubectl: linked /usr/local/bin/kubectl to ${kube} (multi-call: kubectl by name)`);
}

/** Runs every setup step; `log` receives one line per step. */
export async function setup(
  log: (line: string) => void = () => {},
): Promise<void> {
  await ensureDebianPackages(log);
  await ensureBpffs();
  log("bpffs mounted at /sys/fs/bpf");
  log(`BPF program: ${await buildBpf()}`);
  await ensureNpmPackages(log);
  const kube = await ensureKubeBinary(log);
  log(
    kube.built
      ? `built kube-apiserver, etcd, controller-manager, scheduler and kubectl in ${
        (kube.ms / 1000).toFixed(0)
      } s: ${kube.path}`
      : `kube-apiserver, etcd, controller-manager, scheduler, kubectl: cached at ${kube.path}`,
  );
  const images = await ensureImageBinaries(log);
  log(
    images.built
      ? `built the pod images' binaries in ${(images.ms / 1000).toFixed(0)} s: ${images.dir}`
      : `pod images' binaries (echo-basic, coredns): cached at ${images.dir}`,
  );
  await ensureKubectl(kube.path, log);
  const crds = await gatewayApiCrdDir("experimental");
  log(`Gateway API CRDs: ${crds.replace(/\/config\/crd\/experimental$/, "")}`);
}

if (import.meta.main) {
  const started = performance.now();
  try {
    await setup((line) => console.error(`setup: ${line}`));
    console.error(
      `setup: done in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  } catch (e) {
    console.error(`setup failed: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
