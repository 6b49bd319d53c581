/**
 * Container images of the local cluster: each image a pod may name is
 * resolved to a binary built from its Go module at the version pinned in
 * `images/go.mod` (and `images/go.sum`), cached like the `kube` binary. There
 * is no container runtime and no registry: an image that is not in
 * {@link IMAGES} cannot run, and the pod runner says so (`ErrImagePull`).
 *
 * @module
 */

import { cacheDir } from "./binaries.ts";
import { run } from "./host.ts";

/** What an image runs: a binary of ours and the image's entrypoint and default args. */
export interface ImageBinary {
  /** Name of the binary in the image build's output directory. */
  binary: string;
  /** Go package the binary is built from (inside `images/` or a module it requires). */
  goPackage: string;
  /** The image's ENTRYPOINT after its binary (before `command`/`args` replace them). */
  entrypointArgs: string[];
  /** The image's CMD: the default args when the container gives none. */
  cmd: string[];
  /** Where the binary comes from, for docs and error messages. */
  source: string;
}

const ECHO_BASIC: ImageBinary = {
  binary: "echo-basic",
  goPackage: "sigs.k8s.io/gateway-api/conformance/echo-basic",
  entrypointArgs: [],
  cmd: [],
  source: "sigs.k8s.io/gateway-api/conformance/echo-basic at the conformance suite's version",
};

const COREDNS: ImageBinary = {
  binary: "coredns",
  goPackage: "./coredns",
  entrypointArgs: [],
  cmd: [],
  source: "github.com/coredns/coredns (coremain and the plugins in images/coredns/main.go)",
};

/**
 * Image name (without tag) -> binary, and the tags it stands for. The suite's
 * manifests name echo-basic by several tags (v1.5.1, v1.6.0-dev.N); all run
 * the echo-basic of the suite's own version, which serves each of them.
 */
export const IMAGES: Record<string, { binary: ImageBinary; tags: RegExp }> = {
  "registry.k8s.io/gateway-api/echo-basic": { binary: ECHO_BASIC, tags: /^v1\.[56]\.\S*$/ },
  "registry.k8s.io/coredns/coredns": { binary: COREDNS, tags: /^v1\.12\.2$/ },
};

/** An image the table cannot run. */
export class ImageNotFoundError extends Error {
  constructor(readonly image: string, reason: string) {
    super(
      `image "${image}" ${reason}: the local cluster has no container runtime and runs only ` +
        `images that tests/cluster/images.ts maps to binaries (${Object.keys(IMAGES).join(", ")})`,
    );
    this.name = "ImageNotFoundError";
  }
}

/** Splits `repo[:tag][@digest]` into repository and tag (`latest` when none). */
export function parseImage(image: string): { repository: string; tag: string } {
  const noDigest = image.split("@")[0] ?? image;
  const slash = noDigest.lastIndexOf("/");
  const colon = noDigest.lastIndexOf(":");
  if (colon > slash) {
    return { repository: noDigest.slice(0, colon), tag: noDigest.slice(colon + 1) };
  }
  return { repository: noDigest, tag: "latest" };
}

/**
 * The binary that image `image` runs, or an {@link ImageNotFoundError}.
 *
 * @example
 * ```ts
 * resolveImage("registry.k8s.io/gateway-api/echo-basic:v1.5.1").binary; // "echo-basic"
 * ```
 */
export function resolveImage(image: string): ImageBinary {
  const { repository, tag } = parseImage(image);
  const entry = IMAGES[repository];
  if (!entry) throw new ImageNotFoundError(image, "is not known");
  if (!entry.tags.test(tag)) {
    throw new ImageNotFoundError(image, `has no build for tag "${tag}" (${entry.tags})`);
  }
  return entry.binary;
}

const imagesDir = new URL("./images/", import.meta.url).pathname;

async function sourceHash(): Promise<string> {
  const parts: string[] = [];
  for (const name of ["go.mod", "go.sum", "coredns/main.go"]) {
    parts.push(name, await Deno.readTextFile(imagesDir + name));
  }
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(parts.join("\n")),
  );
  return Array.from(new Uint8Array(digest).slice(0, 8))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Directory holding the image binaries for the current pins. */
export async function imageBinaryDir(): Promise<string> {
  return `${cacheDir()}/images-${await sourceHash()}`;
}

/** Path of `binary`'s executable for the current pins (built or not). */
export async function imageBinaryPath(binary: ImageBinary): Promise<string> {
  return `${await imageBinaryDir()}/${binary.binary}`;
}

/**
 * Builds every binary of {@link IMAGES} unless a build for the current pins
 * is cached; `log` receives one line before a build starts.
 */
export async function ensureImageBinaries(
  log: (line: string) => void = () => {},
): Promise<{ dir: string; built: boolean; ms: number }> {
  const dir = await imageBinaryDir();
  const binaries = [...new Set(Object.values(IMAGES).map((i) => i.binary))];
  const missing: ImageBinary[] = [];
  for (const b of binaries) {
    try {
      await Deno.stat(`${dir}/${b.binary}`);
    } catch {
      missing.push(b);
    }
  }
  if (missing.length === 0) return { dir, built: false, ms: 0 };
  log(
    `building the pod images' binaries (${missing.map((b) => b.binary).join(", ")}) ` +
      `from their Go modules into ${dir} (cold: a few minutes; cached afterwards)`,
  );
  const started = performance.now();
  const tmp = `${dir}.build-${Deno.pid}`;
  await Deno.mkdir(tmp, { recursive: true });
  try {
    await run(
      [
        "go",
        "build",
        "-trimpath",
        "-ldflags=-s -w",
        "-o",
        `${tmp}/`,
        ...missing.map((b) => b.goPackage),
      ],
      { cwd: imagesDir, env: { GOFLAGS: "-mod=readonly", CGO_ENABLED: "0" } },
    );
    await Deno.mkdir(dir, { recursive: true });
    for (const b of missing) {
      const built = b.goPackage.split("/").pop() ?? b.binary;
      await Deno.rename(`${tmp}/${built}`, `${dir}/${b.binary}`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  return { dir, built: true, ms: Math.round(performance.now() - started) };
}
