import assert from "node:assert/strict";
import type { PodObject } from "./pod_spec.ts";
import { type ContainerObservation, podPhase, podStatus } from "./pod_status.ts";

const T0 = "2026-01-01T00:00:00Z";
const T1 = "2026-01-01T00:01:00Z";

const pod: PodObject = {
  metadata: { name: "p", namespace: "n", uid: "u" },
  spec: { containers: [{ name: "c", image: "i" }] },
  status: {
    conditions: [{ type: "PodScheduled", status: "True", lastTransitionTime: T0 }],
  },
};

function container(over: Partial<ContainerObservation>): ContainerObservation {
  return {
    name: "c",
    image: "i",
    state: { running: { startedAt: T0 } },
    ready: true,
    restartCount: 0,
    willRestart: false,
    ...over,
  };
}

Deno.test("pod status: a running, ready container makes the pod Running and Ready with its IP", () => {
  const status = podStatus(pod, {
    podIP: "198.18.1.2",
    hostIP: "198.18.0.11",
    startTime: T0,
    containers: [container({})],
  }, T1);
  assert.equal(status.phase, "Running");
  assert.equal(status.podIP, "198.18.1.2");
  assert.deepEqual(status.podIPs, [{ ip: "198.18.1.2" }]);
  assert.deepEqual(
    status.conditions?.map((c) => [c.type, c.status]),
    [
      ["PodReadyToStartContainers", "True"],
      ["Initialized", "True"],
      ["Ready", "True"],
      ["ContainersReady", "True"],
      ["PodScheduled", "True"],
    ],
  );
});

Deno.test("pod status: a container not ready yet names itself; transition times move only on change", () => {
  const first = podStatus(pod, {
    podIP: "198.18.1.2",
    hostIP: "198.18.0.11",
    startTime: T0,
    containers: [container({ ready: false })],
  }, T0);
  const ready = first.conditions?.find((c) => c.type === "Ready");
  assert.equal(ready?.status, "False");
  assert.equal(ready?.message, "containers with unready status: [c]");
  const again = podStatus({ ...pod, status: first }, {
    podIP: "198.18.1.2",
    hostIP: "198.18.0.11",
    startTime: T0,
    containers: [container({ ready: false })],
  }, T1);
  assert.equal(again.conditions?.find((c) => c.type === "Ready")?.lastTransitionTime, T0);
});

Deno.test("pod status: phases from container states", () => {
  const waiting = container({ state: { waiting: { reason: "ErrImagePull" } }, ready: false });
  assert.equal(podPhase([waiting]), "Pending");
  const terminated = (exitCode: number, willRestart: boolean) =>
    container({
      state: { terminated: { exitCode, reason: "x", startedAt: T0, finishedAt: T1 } },
      ready: false,
      willRestart,
    });
  assert.equal(podPhase([terminated(1, true)]), "Running");
  assert.equal(podPhase([terminated(0, false)]), "Succeeded");
  assert.equal(podPhase([terminated(0, false), terminated(2, false)]), "Failed");
  const backingOff = container({
    state: { waiting: { reason: "CrashLoopBackOff" } },
    lastState: { terminated: { exitCode: 2, reason: "Error", startedAt: T0, finishedAt: T1 } },
    ready: false,
  });
  assert.equal(podPhase([backingOff]), "Running");
});
