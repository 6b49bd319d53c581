/**
 * The local cluster's binaries: the real kube-apiserver and etcd, built from
 * their Go modules at the versions pinned in `kube/go.mod` and `kube/go.sum`,
 * and the Gateway API CRDs from the `sigs.k8s.io/gateway-api` module.
 *
 * Builds are cached under `~/.cache/blixt` (or `$BLIXT_CACHE`), keyed by a
 * hash of the Go sources, so a rebuild happens only when a pin changes.
 *
 * @module
 */

import { run } from "./host.ts";

/** Pinned Gateway API release whose CRDs the cluster installs. */
export const GATEWAY_API_VERSION = "v1.6.3";
/** Go module that carries the Gateway API CRDs. */
export const GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api";

const kubeDir = new URL("./kube/", import.meta.url).pathname;

/** Directory of blixt's caches (binaries, downloaded modules' paths). */
export function cacheDir(): string {
  const fromEnv = Deno.env.get("BLIXT_CACHE");
  if (fromEnv) return fromEnv;
  const home = Deno.env.get("HOME") ?? "/root";
  return `${home}/.cache/blixt`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function sourceHash(): Promise<string> {
  const parts: Uint8Array[] = [];
  for (const name of ["go.mod", "go.sum", "main.go"]) {
    parts.push(new TextEncoder().encode(`${name}\n`));
    parts.push(await Deno.readFile(kubeDir + name));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const digest = await crypto.subtle.digest("SHA-256", all);
  return Array.from(new Uint8Array(digest).slice(0, 8))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Path the `kube` binary (apiserver + etcd) has for the current pins. */
export async function kubeBinaryPath(): Promise<string> {
  return `${cacheDir()}/kube-${await sourceHash()}/kube`;
}

/** What {@link ensureKubeBinary} did. */
export interface BuildReport {
  path: string;
  /** Whether it had to build (false: cached). */
  built: boolean;
  /** Wall time of the build in milliseconds (0 when cached). */
  ms: number;
}

/**
 * Builds the `kube` binary unless a build for the current pins is cached.
 * `log` receives one line before a build starts.
 */
export async function ensureKubeBinary(
  log: (line: string) => void = () => {},
): Promise<BuildReport> {
  const path = await kubeBinaryPath();
  if (await exists(path)) return { path, built: false, ms: 0 };
  await requireGo();
  const dir = path.slice(0, path.lastIndexOf("/"));
  await Deno.mkdir(dir, { recursive: true });
  log(
    `building kube-apiserver, etcd and kubectl from their Go modules into ${dir} ` +
      `(cold: about 7 minutes on 2 cores; cached afterwards)`,
  );
  const started = performance.now();
  const tmp = `${path}.build-${Deno.pid}`;
  await run(
    [
      "go",
      "build",
      "-trimpath",
      `-ldflags=${await versionLdflags()}`,
      "-o",
      tmp,
      ".",
    ],
    { cwd: kubeDir, env: { GOFLAGS: "-mod=readonly" } },
  );
  await Deno.rename(tmp, path);
  return { path, built: true, ms: Math.round(performance.now() - started) };
}

/** The pinned k8s.io/kubernetes version, read from `kube/go.mod`. */
export async function kubernetesVersion(): Promise<string> {
  const mod = await Deno.readTextFile(kubeDir + "go.mod");
  const m = /^\s*(?:require\s+)?k8s\.io\/kubernetes (v\S+)/m.exec(mod);
  if (!m?.[1]) {
    throw new Error("kube/go.mod does not require k8s.io/kubernetes");
  }
  return m[1];
}

/** Stamps a binary with its Kubernetes version, as the release build does (`-ldflags`). */
export async function versionLdflags(): Promise<string> {
  const version = await kubernetesVersion();
  const [major, minor] = version.slice(1).split(".");
  const flags = ["-s", "-w"];
  for (
    const pkg of [
      "k8s.io/component-base/version",
      "k8s.io/client-go/pkg/version",
    ]
  ) {
    flags.push(
      `-X ${pkg}.gitVersion=${version}`,
      `-X ${pkg}.gitMajor=${major}`,
      `-X ${pkg}.gitMinor=${minor}`,
      `-X ${pkg}.gitTreeState=clean`,
    );
  }
  return flags.join(" ");
}

/** Throws a clear error when `go` is not on PATH. */
export async function requireGo(): Promise<void> {
  const res = await run(["go", "version"], { allowFailure: true }).catch(
    () => ({ code: 127, stdout: "", stderr: "" }),
  );
  if (res.code !== 0) {
    throw new Error(
      "go is not on PATH: the local cluster builds kube-apiserver and etcd " +
        "from their Go modules and needs Go >= 1.26 (this machine kind ships it " +
        "at /usr/local/go/bin)",
    );
  }
}

/** Which Gateway API CRD channel to install. */
export type GatewayApiChannel = "experimental" | "standard";

/**
 * Directory holding the Gateway API CRD YAML files of `channel` at the
 * pinned version, downloaded (and checksum-verified) by `go mod download`.
 */
export async function gatewayApiCrdDir(
  channel: GatewayApiChannel,
): Promise<string> {
  // Outside any module, so the pin here is the only one that counts; the
  // download is verified against the Go checksum database.
  const res = await run([
    "go",
    "mod",
    "download",
    "-json",
    `${GATEWAY_API_MODULE}@${GATEWAY_API_VERSION}`,
  ], { cwd: "/" });
  const info = JSON.parse(res.stdout) as { Dir?: string; Error?: string };
  if (!info.Dir) {
    throw new Error(`go mod download ${GATEWAY_API_MODULE}: ${info.Error}`);
  }
  return `${info.Dir}/config/crd/${channel}`;
}

/** The CRD files (paths) of `channel`, sorted. */
export async function gatewayApiCrdFiles(
  channel: GatewayApiChannel,
): Promise<string[]> {
  const dir = await gatewayApiCrdDir(channel);
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".yaml") && entry.name !== "kustomization.yaml") {
      files.push(`${dir}/${entry.name}`);
    }
  }
  return files.sort();
}
