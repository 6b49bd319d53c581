/**
 * Credentials for `kube/rest.ts` without loading `@kubernetes/client-node`:
 * a kubeconfig's current context with client certificates, a bearer token or
 * token file, basic auth, a CA and `insecure-skip-tls-verify`, or the
 * in-cluster service account. client-node's module graph (its generated
 * models and API classes, which its `KubeConfig` imports) costs ~70 MiB of
 * RSS in every process; the agent needs none of it (docs/decisions.md).
 *
 * What this does not do itself (exec plugins, auth providers, proxies) is
 * handed to client-node's `KubeConfig`, loaded only then, so every kubeconfig
 * that works with kubectl works here.
 *
 * @module
 */

import http from "node:http";
import https from "node:https";
import { readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import process from "node:process";
import type { KubeConfigOptions } from "./client.ts";

/** The cluster a {@link RestConfig} talks to. */
export interface RestCluster {
  /** URL of the API server, e.g. `https://198.18.0.1:6443`. */
  server: string;
  /** A proxy between the client and the API server, if any. */
  proxyUrl?: string | undefined;
}

/**
 * What `kube/rest.ts` needs of a kubeconfig: client-node's `KubeConfig` is
 * one, {@link loadRestConfig} returns a lighter one where it can.
 */
export interface RestConfig {
  /** The current context's cluster. */
  getCurrentCluster(): RestCluster | null;
  /** Puts TLS settings, credentials and a fresh agent into `opts`. */
  applyToHTTPSOptions(opts: https.RequestOptions): Promise<void>;
}

const SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount";
/** A token file is read again after this long, as client-node and client-go do. */
const TOKEN_FILE_TTL_MS = 60_000;

interface Cluster {
  server: string;
  caFile?: string;
  caData?: string;
  skipTLSVerify?: boolean;
  tlsServerName?: string;
}

interface User {
  certFile?: string;
  certData?: string;
  keyFile?: string;
  keyData?: string;
  token?: string;
  tokenFile?: string;
  username?: string;
  password?: string;
  impersonate?: string;
}

type Dict = Record<string, unknown>;

function str(d: Dict | undefined, key: string): string | undefined {
  const v = d?.[key];
  return typeof v === "string" && v !== "" ? v : undefined;
}

function fileBuffer(file: string | undefined, base64: string | undefined): Buffer | undefined {
  if (base64) return Buffer.from(base64, "base64");
  if (file) return readFileSync(file);
  return undefined;
}

/** The light {@link RestConfig}: one cluster and one user, read from files as kubectl does. */
class StaticRestConfig implements RestConfig {
  readonly #cluster: Cluster;
  readonly #user: User;
  #fileToken: { value: string; readAt: number } | undefined;

  constructor(cluster: Cluster, user: User) {
    this.#cluster = cluster;
    this.#user = user;
  }

  getCurrentCluster(): RestCluster {
    return { server: this.#cluster.server };
  }

  applyToHTTPSOptions(opts: https.RequestOptions): Promise<void> {
    const cluster = this.#cluster;
    const user = this.#user;
    // Read on every request, as client-node does: rotated certificate files are picked up.
    if (cluster.skipTLSVerify) opts.rejectUnauthorized = false;
    if (cluster.tlsServerName) opts.servername = cluster.tlsServerName;
    const ca = fileBuffer(cluster.caFile, cluster.caData);
    if (ca) opts.ca = ca;
    const cert = fileBuffer(user.certFile, user.certData);
    if (cert) opts.cert = cert;
    const key = fileBuffer(user.keyFile, user.keyData);
    if (key) opts.key = key;
    const headers = (opts.headers ?? {}) as Record<string, string>;
    opts.headers = headers;
    if (user.impersonate) headers["Impersonate-User"] = user.impersonate;
    const token = user.token ?? this.#tokenFromFile();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (user.username) opts.auth = `${user.username}:${user.password ?? ""}`;
    const agentOptions: https.AgentOptions = {
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      servername: opts.servername,
    };
    if (opts.rejectUnauthorized !== undefined) {
      agentOptions.rejectUnauthorized = opts.rejectUnauthorized;
    }
    if (cluster.server.startsWith("http:")) {
      if (!cluster.skipTLSVerify) {
        return Promise.reject(
          new Error("HTTP protocol is not allowed when skipTLSVerify is not set or false"),
        );
      }
      opts.agent = new http.Agent(agentOptions);
    } else {
      opts.agent = new https.Agent(agentOptions);
    }
    return Promise.resolve();
  }

  #tokenFromFile(): string | undefined {
    const file = this.#user.tokenFile;
    if (!file) return undefined;
    const now = performance.now();
    if (!this.#fileToken || now - this.#fileToken.readAt > TOKEN_FILE_TTL_MS) {
      this.#fileToken = { value: readFileSync(file, "utf8").trim(), readAt: now };
    }
    return this.#fileToken.value;
  }
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function absolute(base: string, file: string | undefined): string | undefined {
  return file === undefined || isAbsolute(file) ? file : join(base, file);
}

interface Loaded {
  doc: Dict;
  dir: string;
}

async function parseKubeconfig(text: string): Promise<Dict> {
  try {
    return JSON.parse(text) as Dict;
  } catch {
    // Most kubeconfigs are YAML: its parser is loaded only for them.
    const { parse } = await import("yaml");
    return (parse(text) ?? {}) as Dict;
  }
}

/** The kubeconfig files in kubectl's order: `--kubeconfig`, else $KUBECONFIG, else ~/.kube/config. */
function kubeconfigFiles(options: KubeConfigOptions): string[] {
  if (options.kubeconfig) return [options.kubeconfig];
  const env = process.env.KUBECONFIG;
  if (env) return env.split(delimiter).filter((f) => f !== "");
  const home = join(homedir(), ".kube", "config");
  return exists(home) ? [home] : [];
}

/** The first occurrence of each name wins, as kubectl merges several files. */
function merge(files: Loaded[], key: string): Dict[] {
  const out: Dict[] = [];
  const seen = new Set<unknown>();
  for (const { doc, dir } of files) {
    for (const item of (Array.isArray(doc[key]) ? doc[key] : []) as Dict[]) {
      if (seen.has(item?.name)) continue;
      seen.add(item?.name);
      out.push({ ...item, dir });
    }
  }
  return out;
}

/**
 * Loads a kubeconfig the way kubectl does (`--kubeconfig`, then
 * $KUBECONFIG, then `~/.kube/config`, then the in-cluster service account).
 * A context whose user runs an exec plugin or an auth provider, or whose
 * cluster has a proxy, gets client-node's `KubeConfig` (loadKubeConfig).
 */
export async function loadRestConfig(options: KubeConfigOptions = {}): Promise<RestConfig> {
  const paths = kubeconfigFiles(options);
  if (paths.length === 0) {
    if (options.context) throw new Error(`context "${options.context}" is not in the kubeconfig`);
    return inCluster();
  }
  const files: Loaded[] = [];
  for (const path of paths) {
    files.push({ doc: await parseKubeconfig(readFileSync(path, "utf8")), dir: dirname(path) });
  }
  const contexts = merge(files, "contexts");
  // As kubectl: the first file that names a current context decides it.
  const contextName = options.context ??
    files.map((f) => str(f.doc, "current-context")).find((c) => c !== undefined);
  const context = contexts.find((c) => c.name === contextName)?.context as Dict | undefined;
  if (options.context && !context) {
    throw new Error(`context "${options.context}" is not in the kubeconfig`);
  }
  const clusterEntry = merge(files, "clusters").find((c) => c.name === str(context, "cluster"));
  const userEntry = merge(files, "users").find((u) => u.name === str(context, "user"));
  const cluster = clusterEntry?.cluster as Dict | undefined;
  const user = (userEntry?.user ?? {}) as Dict;
  if (!cluster || !str(cluster, "server")) {
    throw new Error("the kubeconfig names no cluster for its current context");
  }
  if (user.exec || user["auth-provider"] || cluster["proxy-url"]) {
    const { loadKubeConfig } = await import("./client.ts");
    return loadKubeConfig(options);
  }
  const clusterDir = clusterEntry!.dir as string;
  const userDir = userEntry?.dir as string;
  const as = str(user, "as");
  return new StaticRestConfig(
    {
      server: str(cluster, "server")!,
      ...opt("caFile", absolute(clusterDir, str(cluster, "certificate-authority"))),
      ...opt("caData", str(cluster, "certificate-authority-data")),
      ...(cluster["insecure-skip-tls-verify"] === true ? { skipTLSVerify: true } : {}),
      ...opt("tlsServerName", str(cluster, "tls-server-name")),
    },
    {
      ...opt("certFile", absolute(userDir, str(user, "client-certificate"))),
      ...opt("certData", str(user, "client-certificate-data")),
      ...opt("keyFile", absolute(userDir, str(user, "client-key"))),
      ...opt("keyData", str(user, "client-key-data")),
      ...opt("token", str(user, "token")),
      ...opt("tokenFile", absolute(userDir, str(user, "tokenFile"))),
      ...opt("username", str(user, "username")),
      ...opt("password", str(user, "password")),
      ...opt("impersonate", as),
    },
  );
}

function opt<K extends string>(key: K, value: string | undefined): { [k in K]?: string } {
  return value === undefined ? {} : { [key]: value } as { [k in K]: string };
}

/** The in-cluster service account, as client-go's rest.InClusterConfig. */
function inCluster(): RestConfig {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  if (!host || !port || !exists(`${SERVICE_ACCOUNT}/token`)) {
    throw new Error(
      "no kubeconfig ($KUBECONFIG, ~/.kube/config) and not running in a cluster " +
        "(KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT, a service account token)",
    );
  }
  const scheme = port === "80" || port === "8080" || port === "8001" ? "http" : "https";
  const server = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  return new StaticRestConfig(
    { server, caFile: `${SERVICE_ACCOUNT}/ca.crt` },
    { tokenFile: `${SERVICE_ACCOUNT}/token` },
  );
}
