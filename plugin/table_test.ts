import assert from "node:assert/strict";
import { age, humanDuration, percent, renderTable, useColor } from "./table.ts";

const env = (vars: Record<string, string>) => ({ get: (k: string) => vars[k] });

Deno.test("a table pads columns by three spaces, at least six wide, and leaves the last unpadded", () => {
  const text = renderTable({
    headers: ["NAME", "AGE", "MESSAGE"],
    rows: [["gw", "5m", "ok"], ["longer-name", "3h12m", "a b"]],
  }, { noHeaders: false, color: false });
  assert.equal(
    text,
    "NAME          AGE     MESSAGE\n" +
      "gw            5m      ok\n" +
      "longer-name   3h12m   a b\n",
  );
});

Deno.test("a one-letter column is six wide, as kubectl's tabwriter makes it", () => {
  const text = renderTable({ headers: ["A", "B"], rows: [["x", "y"]] }, {
    noHeaders: false,
    color: false,
  });
  assert.equal(text, "A     B\nx     y\n");
});

Deno.test("empty cells read <none>; without headers, widths come from the rows alone", () => {
  const text = renderTable({ headers: ["NAME", "NODE"], rows: [["gw", ""]] }, {
    noHeaders: true,
    color: false,
  });
  assert.equal(text, "gw    <none>\n");
});

Deno.test("colour codes do not count towards the column width", () => {
  const plain = renderTable({
    headers: ["STATE", "X"],
    rows: [[{ text: "Ready", color: "green" }, "1"]],
  }, { noHeaders: true, color: false });
  const colored = renderTable({
    headers: ["STATE", "X"],
    rows: [[{ text: "Ready", color: "green" }, "1"]],
  }, { noHeaders: true, color: true });
  assert.equal(colored, "\x1b[32mReady\x1b[0m   1\n");
  assert.equal(plain, "Ready   1\n");
});

Deno.test("colour only on a terminal, never with NO_COLOR or TERM=dumb", () => {
  assert.equal(useColor(true, env({})), true);
  assert.equal(useColor(false, env({})), false);
  assert.equal(useColor(true, env({ NO_COLOR: "1" })), false);
  assert.equal(useColor(true, env({ NO_COLOR: "" })), true);
  assert.equal(useColor(true, env({ TERM: "dumb" })), false);
});

Deno.test("ages read like kubectl get's (apimachinery HumanDuration)", () => {
  const s = 1000, m = 60 * s, h = 60 * m, d = 24 * h;
  const cases: [number, string][] = [
    [-5 * s, "<invalid>"],
    [-1 * s, "0s"],
    [0, "0s"],
    [45 * s, "45s"],
    [119 * s, "119s"],
    [2 * m, "2m"],
    [2 * m + 30 * s, "2m30s"],
    [9 * m + 59 * s, "9m59s"],
    [10 * m + 30 * s, "10m"],
    [179 * m, "179m"],
    [3 * h + 12 * m, "3h12m"],
    [5 * h, "5h"],
    [10 * h + 5 * m, "10h"],
    [47 * h, "47h"],
    [3 * d + 4 * h, "3d4h"],
    [7 * d, "7d"],
    [40 * d, "40d"],
    [2 * 365 * d + 30 * d, "2y30d"],
    [9 * 365 * d, "9y"],
  ];
  for (const [ms, want] of cases) assert.equal(humanDuration(ms), want, `${ms} ms`);
  assert.equal(age("2026-03-01T11:55:00Z", new Date("2026-03-01T12:00:00Z")), "5m");
  assert.equal(age(undefined, new Date()), "<unknown>");
  assert.equal(age("yesterday", new Date()), "<unknown>");
  assert.equal(age("1970-01-01T00:00:00Z", new Date()), "<unknown>", "the CRDs' placeholder");
});

Deno.test("shares print as percentages with at most one decimal", () => {
  assert.equal(percent(0.375), "37.5%");
  assert.equal(percent(1 / 3), "33.3%");
  assert.equal(percent(1), "100%");
  assert.equal(percent(0), "0%");
});
