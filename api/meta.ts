/**
 * Names and small types shared by every blixt.dev kind.
 *
 * @module
 */

/** API group of blixt's own resources. */
export const GROUP = "blixt.dev";
/** Version of blixt's own resources. */
export const VERSION = "v1alpha1";
/** `apiVersion` of blixt's own resources. */
export const API_VERSION = `${GROUP}/${VERSION}` as const;
/** GatewayClass `spec.controllerName` that blixt answers to. */
export const CONTROLLER_NAME = "blixt.dev/gateway-controller";
/** Label carried by every object blixt installs or writes. */
export const PART_OF_LABEL = { "app.kubernetes.io/part-of": "blixt" } as const;
/** Largest weight a backend, a backendRef or a reject share may carry. */
export const MAX_WEIGHT = 1_000_000;

/** Status of a condition, as in `metav1.Condition`. */
export type ConditionStatus = "True" | "False" | "Unknown";

/** A `metav1.Condition`, timestamps as RFC 3339 strings as they travel in JSON. */
export interface Condition {
  /** CamelCase condition type, e.g. `Ready`. */
  type: string;
  /** True, False or Unknown. */
  status: ConditionStatus;
  /** CamelCase reason for the last transition. */
  reason: string;
  /** Human readable detail. */
  message: string;
  /** `metadata.generation` the condition was computed for. */
  observedGeneration?: number;
  /** When `status` last changed. */
  lastTransitionTime: string;
}

/** The part of `metav1.ObjectMeta` blixt's own objects use. */
export interface ObjectMeta {
  /** Object name. */
  name: string;
  /** Namespace, absent for cluster-scoped kinds. */
  namespace?: string;
  /** Bumped by the API server on every spec change. */
  generation?: number;
  /** Optimistic concurrency token. */
  resourceVersion?: string;
  /** Set by the API server. */
  uid?: string;
  /** Set by the API server. */
  creationTimestamp?: string;
  /** Labels. */
  labels?: Record<string, string>;
  /** Annotations. */
  annotations?: Record<string, string>;
  /** Owners, used for garbage collection. */
  ownerReferences?: OwnerReference[];
}

/** A `metav1.OwnerReference`. */
export interface OwnerReference {
  /** Owner's apiVersion. */
  apiVersion: string;
  /** Owner's kind. */
  kind: string;
  /** Owner's name. */
  name: string;
  /** Owner's uid. */
  uid: string;
  /** Whether the owner is the managing controller. */
  controller?: boolean;
  /** Whether deletion of the owner waits for this object. */
  blockOwnerDeletion?: boolean;
}

/** One problem found in an object: where, and what is wrong. */
export interface FieldError {
  /** JSON path of the field, e.g. `spec.entries[0].port`. */
  path: string;
  /** What is wrong, in a sentence a user can act on. */
  message: string;
}

/** Outcome of validating an untrusted object: the typed value or the errors. */
export type Validated<T> =
  | { ok: true; value: T }
  | { ok: false; errors: FieldError[] };

/** Formats field errors as one line each, `path: message`. */
export function formatFieldErrors(errors: readonly FieldError[]): string {
  return errors.map((e) => `${e.path}: ${e.message}`).join("\n");
}
