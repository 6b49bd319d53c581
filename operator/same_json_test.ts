import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { sameJson } from "./same_json.ts";

Deno.test("sameJson agrees with isDeepStrictEqual on JSON values", () => {
  const cases: [unknown, unknown][] = [
    [1, 1],
    [1, "1"],
    [null, null],
    [null, {}],
    [undefined, undefined],
    [[], {}],
    [[1, 2], [1, 2]],
    [[1, 2], [2, 1]],
    [[1, [2]], [1, [2, 3]]],
    [{ a: 1, b: [{ c: "x" }] }, { b: [{ c: "x" }], a: 1 }],
    [{ a: 1, b: [{ c: "x" }] }, { a: 1, b: [{ c: "y" }] }],
    [{ a: undefined }, {}],
    [{ a: undefined }, { b: undefined }],
    [{ a: 1 }, { a: 1, b: 2 }],
    [{ entries: [{ backends: [{ ip: "198.18.0.1", weight: 1 }] }] }, {
      entries: [{ backends: [{ weight: 1, ip: "198.18.0.1" }] }],
    }],
  ];
  for (const [a, b] of cases) {
    assert.equal(sameJson(a, b), isDeepStrictEqual(a, b), `${JSON.stringify([a, b])}`);
    assert.equal(sameJson(b, a), isDeepStrictEqual(b, a), `${JSON.stringify([b, a])}`);
  }
});
