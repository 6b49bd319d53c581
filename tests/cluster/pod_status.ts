/**
 * A Pod's status from what the pod runner observes, as kubelet computes it:
 * phase, the conditions PodScheduled, PodReadyToStartContainers,
 * Initialized, ContainersReady and Ready (with readiness gates), IPs and
 * the container statuses. Pure: the runner writes what this returns.
 *
 * @module
 */

import type { PodCondition, PodObject, PodStatus } from "./pod_spec.ts";

/** A container's state, as the API shows it. */
export type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | {
    terminated: {
      exitCode: number;
      signal?: number;
      reason: string;
      message?: string;
      startedAt: string;
      finishedAt: string;
    };
  };

/** What the runner knows of one container. */
export interface ContainerObservation {
  name: string;
  image: string;
  state: ContainerState;
  lastState?: ContainerState;
  ready: boolean;
  restartCount: number;
  /** Whether it will be started again after it terminated (restart policy). */
  willRestart: boolean;
}

/** What the runner knows of a pod. */
export interface PodObservation {
  /** Address, once the pod's network exists. */
  podIP?: string | undefined;
  hostIP: string;
  startTime: string;
  containers: ContainerObservation[];
}

function condition(
  type: string,
  ok: boolean,
  old: PodCondition[],
  now: string,
  why?: { reason: string; message: string },
): PodCondition {
  const status = ok ? "True" : "False";
  const before = old.find((c) => c.type === type);
  return {
    type,
    status,
    ...(!ok && why ? { reason: why.reason, message: why.message } : {}),
    lastProbeTime: null,
    lastTransitionTime: before?.status === status && before.lastTransitionTime
      ? before.lastTransitionTime
      : now,
  };
}

/** The phase of a pod from its containers (kubelet's getPhase, without init containers). */
export function podPhase(containers: ContainerObservation[]): string {
  let waiting = 0, running = 0, succeeded = 0, failed = 0, restarting = 0;
  for (const c of containers) {
    if ("running" in c.state) running++;
    else if ("terminated" in c.state) {
      if (c.willRestart) restarting++;
      else if (c.state.terminated.exitCode === 0) succeeded++;
      else failed++;
    } else if (c.lastState && "terminated" in c.lastState) restarting++;
    else waiting++;
  }
  if (waiting > 0) return "Pending";
  if (running > 0 || restarting > 0) return "Running";
  if (failed > 0) return "Failed";
  if (succeeded === containers.length && containers.length > 0) return "Succeeded";
  return "Pending";
}

/** The status to write for `pod`, given what the runner observed; `now` is an RFC 3339 time. */
export function podStatus(pod: PodObject, seen: PodObservation, now: string): PodStatus {
  const old = pod.status?.conditions ?? [];
  const phase = podPhase(seen.containers);
  const notReady = seen.containers.filter((c) => !c.ready).map((c) => c.name);
  const containersReady = notReady.length === 0;
  const gates = (pod.spec.readinessGates ?? []).map((g) => g.conditionType);
  const gatesFailing = gates.filter((g) => !old.some((c) => c.type === g && c.status === "True"));
  const unready = {
    reason: "ContainersNotReady",
    message: `containers with unready status: [${notReady.join(" ")}]`,
  };
  const ready = containersReady && gatesFailing.length === 0;
  const readyWhy = !containersReady ? unready : {
    reason: "ReadinessGatesNotReady",
    message: `corresponding condition of pod readiness gate "${gatesFailing[0]}" does not exist.`,
  };
  const done = phase === "Succeeded" || phase === "Failed";
  const conditions: PodCondition[] = [
    condition("PodReadyToStartContainers", seen.podIP !== undefined && !done, old, now),
    condition("Initialized", true, old, now),
    condition(
      "Ready",
      ready && !done,
      old,
      now,
      done ? { reason: "PodCompleted", message: "" } : readyWhy,
    ),
    condition(
      "ContainersReady",
      containersReady && !done,
      old,
      now,
      done ? { reason: "PodCompleted", message: "" } : unready,
    ),
  ];
  // Conditions others own (PodScheduled from the scheduler, readiness gates) stay as they are.
  const ours = new Set(conditions.map((c) => c.type));
  for (const c of old) if (!ours.has(c.type)) conditions.push(c);
  const order = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
  ];
  conditions.sort((a, b) => rank(order, a.type) - rank(order, b.type));
  return {
    phase,
    conditions,
    hostIP: seen.hostIP,
    hostIPs: [{ ip: seen.hostIP }],
    ...(seen.podIP ? { podIP: seen.podIP, podIPs: [{ ip: seen.podIP }] } : {}),
    startTime: seen.startTime,
    containerStatuses: seen.containers.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: "",
      ...("running" in c.state || "terminated" in c.state
        ? { containerID: `blixt-pod-runner://${pod.metadata.uid}/${c.name}/${c.restartCount}` }
        : {}),
      state: c.state,
      lastState: c.lastState ?? {},
      ready: c.ready,
      restartCount: c.restartCount,
      started: "running" in c.state,
    })),
    ...(pod.status?.qosClass ? { qosClass: pod.status.qosClass } : {}),
  };
}

function rank(order: string[], type: string): number {
  const i = order.indexOf(type);
  return i < 0 ? order.length : i;
}
