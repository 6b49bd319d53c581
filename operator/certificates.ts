/**
 * HTTPS listener certificate references: what the operator keeps of a Secret
 * (its name and whether it holds a usable TLS pair, never the key itself) and
 * how a listener's `tls.certificateRefs` resolve against the snapshot and
 * ReferenceGrants. blixt terminates no TLS; it checks the references because
 * the Gateway API makes a listener's `ResolvedRefs` depend on them.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { ConditionSpec } from "./conditions.ts";
import type { Listener } from "./listeners.ts";
import { type Gateway, GATEWAY_GROUP, objectKey, type Snapshot } from "./snapshot.ts";

/** The Secret type a certificateRef must name (Core support). */
export const TLS_SECRET_TYPE = "kubernetes.io/tls";

/** What the snapshot keeps of a Secret: no data, only the verdict on it. */
export interface SecretSummary {
  /** Always v1. */
  apiVersion: "v1";
  /** Always Secret. */
  kind: "Secret";
  /** Name, namespace, resourceVersion. */
  metadata: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
  };
  /** The Secret's type. */
  type?: string;
  /** Why it is not a usable TLS certificate and key; absent when it is. */
  tlsProblem?: string;
  /** Marks a summary (no data by design), so summarizing again keeps the verdict. */
  summary: true;
}

/** A Secret as the API server returns it (data base64-encoded). */
export interface SecretObject {
  metadata?: SecretSummary["metadata"];
  type?: string;
  data?: Record<string, string>;
  tlsProblem?: string;
  summary?: true;
}

/**
 * Reduces a Secret to a {@linkcode SecretSummary}: a `kubernetes.io/tls`
 * Secret whose `tls.crt` parses as an X.509 certificate and `tls.key` as the
 * private key of that certificate has no `tlsProblem`. Idempotent (a summary
 * stays as it is).
 */
export function summarizeSecret(secret: SecretObject): SecretSummary {
  const { name, namespace, resourceVersion, uid } = secret.metadata ?? {};
  const metadata = {
    ...(name === undefined ? {} : { name }),
    ...(namespace === undefined ? {} : { namespace }),
    ...(resourceVersion === undefined ? {} : { resourceVersion }),
    ...(uid === undefined ? {} : { uid }),
  };
  const summary: SecretSummary = {
    apiVersion: "v1",
    kind: "Secret",
    metadata,
    ...(secret.type === undefined ? {} : { type: secret.type }),
    summary: true,
  };
  if (secret.summary === true) {
    return secret.tlsProblem === undefined
      ? summary
      : { ...summary, tlsProblem: secret.tlsProblem };
  }
  const problem = tlsProblem(secret);
  return problem === undefined ? summary : { ...summary, tlsProblem: problem };
}

function tlsProblem(secret: SecretObject): string | undefined {
  if (secret.type !== TLS_SECRET_TYPE) {
    return `type is ${secret.type ?? "Opaque"}, not ${TLS_SECRET_TYPE}`;
  }
  const decode = (key: string) => {
    const b64 = secret.data?.[key];
    if (b64 === undefined || b64 === "") return undefined;
    try {
      return atob(b64);
    } catch {
      return undefined;
    }
  };
  const crt = decode("tls.crt");
  const key = decode("tls.key");
  if (crt === undefined) return "tls.crt is missing or empty";
  if (key === undefined) return "tls.key is missing or empty";
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(crt);
  } catch {
    return "tls.crt is not a PEM X.509 certificate";
  }
  try {
    const privateKey = createPrivateKey(key);
    if (!cert.checkPrivateKey(privateKey)) return "tls.key is not the key of tls.crt";
  } catch {
    return "tls.key is not a PEM private key";
  }
  return undefined;
}

/** Whether a ReferenceGrant in `namespace` lets Gateways of `from` refer to Secret `name`. */
export function secretGranted(
  snapshot: Snapshot,
  ref: { from: string; namespace: string; name: string },
): boolean {
  for (const grant of snapshot.referenceGrants.values()) {
    if (grant.metadata?.namespace !== ref.namespace) continue;
    const from = grant.spec?.from?.some((f) =>
      f.group === GATEWAY_GROUP && f.kind === "Gateway" && f.namespace === ref.from
    );
    const to = grant.spec?.to?.some((t) =>
      (t.group ?? "") === "" && t.kind === "Secret" &&
      (t.name === undefined || t.name === "" || t.name === ref.name)
    );
    if (from && to) return true;
  }
  return false;
}

/**
 * The ResolvedRefs verdict on an HTTPS listener's certificateRefs, or
 * undefined when all resolve: RefNotPermitted when a cross-namespace ref has
 * no ReferenceGrant (it wins, as the spec asks), InvalidCertificateRef when a
 * permitted ref names something other than a core Secret, a missing Secret,
 * or one without a usable certificate and key.
 */
export function certificateRefsProblem(
  listener: Listener,
  context: { gateway: Gateway; snapshot: Snapshot },
): ConditionSpec | undefined {
  const gatewayNs = context.gateway.metadata?.namespace ?? "";
  const refs = listener.tls?.certificateRefs ?? [];
  if (refs.length === 0) {
    return invalid("InvalidCertificateRef", "an HTTPS listener needs a tls.certificateRefs entry");
  }
  const notPermitted: string[] = [];
  const invalidRefs: string[] = [];
  for (const ref of refs) {
    const group = ref.group ?? "";
    const kind = ref.kind ?? "Secret";
    const namespace = ref.namespace ?? gatewayNs;
    const label = `${group === "" ? "" : `${group}/`}${kind} ${namespace}/${ref.name}`;
    if (
      namespace !== gatewayNs &&
      !secretGranted(context.snapshot, { from: gatewayNs, namespace, name: ref.name })
    ) {
      notPermitted.push(
        `${label}: no ReferenceGrant in namespace ${namespace} allows Gateways from ${gatewayNs}`,
      );
    } else if (group !== "" || kind !== "Secret") {
      invalidRefs.push(`${label}: only core Secrets are supported`);
    } else {
      const secret = context.snapshot.secrets.get(objectKey(namespace, ref.name));
      if (secret === undefined) invalidRefs.push(`${label}: not found`);
      else if (secret.tlsProblem) invalidRefs.push(`${label}: ${secret.tlsProblem}`);
    }
  }
  if (notPermitted.length > 0) {
    return invalid("RefNotPermitted", [...notPermitted, ...invalidRefs].join("; "));
  }
  if (invalidRefs.length > 0) return invalid("InvalidCertificateRef", invalidRefs.join("; "));
  return undefined;
}

function invalid(reason: string, message: string): ConditionSpec {
  return { type: "ResolvedRefs", status: "False", reason, message };
}
