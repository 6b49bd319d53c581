/**
 * The workspace keeps its promises: one pinned Deno, the fixed task names,
 * and a CI script that runs the README's test command.
 */

import assert from "node:assert/strict";

const root = new URL("../", import.meta.url).pathname;
const readme = await Deno.readTextFile(`${root}README.md`);
const denoJson = JSON.parse(await Deno.readTextFile(`${root}deno.json`)) as {
  tasks: Record<string, string>;
  test?: { sanitizeOps?: boolean; sanitizeResources?: boolean };
  compilerOptions: Record<string, boolean>;
};

Deno.test("README's two commands use the pinned Deno that runs these tests", () => {
  const pins = [...readme.matchAll(/npx --yes deno@(\d+\.\d+\.\d+) task (\w+)/g)];
  assert.deepEqual(pins.map((m) => m[2]).sort(), ["demo", "test"]);
  for (const m of pins) assert.equal(m[1], Deno.version.deno, `README pins deno@${m[1]}`);
});

Deno.test("deno.json has the fixed task names, strict options and sanitizers", () => {
  for (const task of ["ok", "test", "setup", "demo", "cluster:up", "cluster:down"]) {
    assert.ok(denoJson.tasks[task], `task ${task} exists`);
  }
  assert.match(denoJson.tasks.ok!, /deno fmt --check.*deno lint.*deno check/);
  assert.equal(denoJson.compilerOptions.noUncheckedIndexedAccess, true);
  assert.equal(denoJson.compilerOptions.exactOptionalPropertyTypes, true);
  assert.deepEqual(denoJson.test, { sanitizeOps: true, sanitizeResources: true });
});

Deno.test(".ci/run runs the README's test command and deno task ok", async () => {
  const ci = await Deno.readTextFile(`${root}.ci/run`);
  assert.match(ci, /grep .*task test' README\.md/);
  assert.match(ci, /task ok/);
  const stat = await Deno.stat(`${root}.ci/run`);
  assert.ok((stat.mode ?? 0) & 0o100, ".ci/run is executable");
});
