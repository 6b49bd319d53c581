import assert from "node:assert/strict";
import { AGENT_FEATURES, buildStatus } from "./status.ts";

Deno.test("the agent lists backendsFrom in status.features, so the operator may share backends", () => {
  const status = buildStatus({ tables: [], programmed: new Map(), synced: true }, undefined);
  assert.deepEqual(status.features, ["backendsFrom"]);
  assert.deepEqual(AGENT_FEATURES, ["backendsFrom"]);
});
