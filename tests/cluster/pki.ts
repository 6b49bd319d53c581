/**
 * The local cluster's certificates, made with the openssl command line:
 * one CA, the API server's serving certificate, an admin client certificate
 * (group `system:masters`) for the host's kubeconfig, and the service
 * account signing key pair. ECDSA P-256 throughout: fast to make, accepted
 * by Go's TLS stack, rustls (Deno) and kubectl.
 *
 * @module
 */

import { run } from "./host.ts";

/** Paths of the files {@link makePki} writes. */
export interface Pki {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
}

/** The PKI file paths inside `dir`. */
export function pkiPaths(dir: string): Pki {
  return {
    caCert: `${dir}/ca.crt`,
    caKey: `${dir}/ca.key`,
    serverCert: `${dir}/apiserver.crt`,
    serverKey: `${dir}/apiserver.key`,
    adminCert: `${dir}/admin.crt`,
    adminKey: `${dir}/admin.key`,
    serviceAccountKey: `${dir}/sa.key`,
    serviceAccountPub: `${dir}/sa.pub`,
  };
}

async function newKey(path: string): Promise<void> {
  await run([
    "openssl",
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-out",
    path,
  ]);
}

/** Options of {@link issueCert}. */
export interface CertRequest {
  subject: string;
  /** Subject alternative names, e.g. `IP:198.18.0.1`, `DNS:kubernetes`. */
  altNames?: string[];
  usage: "server" | "client";
  days?: number;
}

/** Issues a certificate for the key at `key`, signed by `pki`'s CA. */
export async function issueCert(
  pki: Pki,
  key: string,
  cert: string,
  req: CertRequest,
): Promise<void> {
  const csr = (await run([
    "openssl",
    "req",
    "-new",
    "-key",
    key,
    "-subj",
    req.subject,
  ])).stdout;
  const ext = [
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    `extendedKeyUsage=${req.usage === "server" ? "serverAuth" : "clientAuth"}`,
    ...(req.altNames?.length ? [`subjectAltName=${req.altNames.join(",")}`] : []),
  ].join("\n");
  const extFile = `${cert}.ext`;
  await Deno.writeTextFile(extFile, ext + "\n");
  try {
    await run([
      "openssl",
      "x509",
      "-req",
      "-CA",
      pki.caCert,
      "-CAkey",
      pki.caKey,
      "-set_serial",
      `0x${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`,
      "-days",
      String(req.days ?? 365),
      "-extfile",
      extFile,
      "-out",
      cert,
    ], { stdin: csr });
  } finally {
    await Deno.remove(extFile);
  }
}

/**
 * Makes the cluster's PKI in `dir` unless it is already there. The serving
 * certificate names the API server's address `serverIP` and the first
 * Service ClusterIP `serviceIP` (how pods reach `kubernetes.default`).
 */
export async function makePki(
  dir: string,
  addresses: { serverIP: string; serviceIP: string },
): Promise<Pki> {
  const pki = pkiPaths(dir);
  try {
    await Deno.stat(pki.serviceAccountPub);
    return pki;
  } catch {
    // not made yet
  }
  await Deno.mkdir(dir, { recursive: true });
  await newKey(pki.caKey);
  await run([
    "openssl",
    "req",
    "-x509",
    "-new",
    "-key",
    pki.caKey,
    "-subj",
    "/CN=blixt-local-cluster-ca",
    "-days",
    "3650",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    "-out",
    pki.caCert,
  ]);
  await newKey(pki.serverKey);
  await issueCert(pki, pki.serverKey, pki.serverCert, {
    subject: "/CN=kube-apiserver",
    usage: "server",
    altNames: [
      `IP:${addresses.serverIP}`,
      `IP:${addresses.serviceIP}`,
      "IP:127.0.0.1",
      "DNS:localhost",
      "DNS:kubernetes",
      "DNS:kubernetes.default",
      "DNS:kubernetes.default.svc",
      "DNS:kubernetes.default.svc.cluster.local",
    ],
  });
  await newKey(pki.adminKey);
  await issueCert(pki, pki.adminKey, pki.adminCert, {
    subject: "/O=system:masters/CN=blixt-admin",
    usage: "client",
  });
  await newKey(pki.serviceAccountKey);
  await run([
    "openssl",
    "pkey",
    "-in",
    pki.serviceAccountKey,
    "-pubout",
    "-out",
    pki.serviceAccountPub,
  ]);
  return pki;
}

/** A client certificate and its key. */
export interface ClientCert {
  cert: string;
  key: string;
}

/**
 * The client certificate `<dir>/<name>.crt` (with its key) for `subject`,
 * made when missing: the identities of the controller manager
 * (`/CN=system:kube-controller-manager`), the scheduler and each node
 * (`/O=system:nodes/CN=system:node:<name>`).
 */
export async function ensureClientCert(
  pki: Pki,
  name: string,
  subject: string,
): Promise<ClientCert> {
  const dir = pki.caCert.slice(0, pki.caCert.lastIndexOf("/"));
  const cert = { cert: `${dir}/${name}.crt`, key: `${dir}/${name}.key` };
  try {
    await Deno.stat(cert.cert);
    return cert;
  } catch {
    // not made yet
  }
  await newKey(cert.key);
  await issueCert(pki, cert.key, `${cert.cert}.tmp`, { subject, usage: "client" });
  await Deno.rename(`${cert.cert}.tmp`, cert.cert);
  return cert;
}
