import assert from "node:assert/strict";
import { AGENT_FEATURES, buildStatus, INTERFACE_NOT_ATTACHED } from "./status.ts";

Deno.test("the agent lists backendsFrom, endpoints and compactEntries in status.features, so the operator may use them", () => {
  const status = buildStatus({ tables: [], programmed: new Map(), synced: true }, undefined);
  const all = ["backendsFrom", "endpoints", "compactEntries"];
  assert.deepEqual(status.features, all);
  assert.deepEqual(AGENT_FEATURES, all);
});

Deno.test("an interface without the program makes the node Degraded=True/InterfaceNotAttached, not un-Ready", () => {
  const status = buildStatus(
    {
      tables: [],
      programmed: new Map(),
      synced: true,
      interfaceProblems: ["cni0 (pods): not present since it was deleted"],
    },
    undefined,
    { now: "2026-11-27T08:00:00Z" },
  );
  const by = (type: string) => status.conditions?.find((c) => c.type === type);
  assert.equal(by("Ready")?.status, "True");
  assert.deepEqual(
    [by("Degraded")?.status, by("Degraded")?.reason, by("Degraded")?.message],
    [
      "True",
      INTERFACE_NOT_ATTACHED,
      "the program is not on cni0 (pods): not present since it was deleted",
    ],
  );
  const fixed = buildStatus({ tables: [], programmed: new Map(), synced: true }, status);
  assert.equal(fixed.conditions?.find((c) => c.type === "Degraded")?.reason, "NoProblems");
});
