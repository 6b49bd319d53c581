/**
 * Conditions as Gateway API asks for them: `observedGeneration` on each, and
 * `lastTransitionTime` kept while the status does not change.
 *
 * @module
 */
import type { Condition, ConditionStatus } from "../api/mod.ts";

/** A condition as reconcile decides it, before timestamps. */
export interface ConditionSpec {
  /** Condition type. */
  type: string;
  /** True, False or Unknown. */
  status: ConditionStatus;
  /** CamelCase reason. */
  reason: string;
  /** Message for a human. */
  message: string;
}

/**
 * Merges desired conditions into the previous list: a condition keeps its
 * `lastTransitionTime` when its status is unchanged, conditions of types the
 * caller does not own are kept as they were (the spec forbids removing them),
 * and every owned condition gets `observedGeneration`.
 */
export function mergeConditions(
  previous: readonly Partial<Condition>[] | undefined,
  desired: readonly ConditionSpec[],
  options: { generation: number; now: string; owned?: readonly string[] },
): Condition[] {
  const owned = new Set(options.owned ?? desired.map((d) => d.type));
  const byType = new Map((previous ?? []).map((c) => [c.type, c]));
  const out: Condition[] = [];
  for (const d of desired) {
    const old = byType.get(d.type);
    const lastTransitionTime =
      old?.status === d.status && typeof old.lastTransitionTime === "string"
        ? old.lastTransitionTime
        : options.now;
    out.push({
      ...d,
      observedGeneration: options.generation,
      lastTransitionTime,
    });
  }
  const desiredTypes = new Set(desired.map((d) => d.type));
  for (const c of previous ?? []) {
    if (c.type === undefined || desiredTypes.has(c.type) || owned.has(c.type)) {
      continue;
    }
    out.push(c as Condition);
  }
  return out;
}

/** The condition of a type, if present. */
export function findCondition<C extends { type?: string | undefined }>(
  conditions: readonly C[] | undefined,
  type: string,
): C | undefined {
  return conditions?.find((c) => c.type === type);
}
