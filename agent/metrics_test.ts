import assert from "node:assert/strict";
import { Registry } from "./metrics.ts";

Deno.test("metrics: counters, gauges and histograms render as Prometheus text", () => {
  const r = new Registry();
  r.inc("blixt_agent_syncs_total", "Syncs.", { labels: { result: "ok" } });
  r.inc("blixt_agent_syncs_total", "Syncs.", { labels: { result: "ok" } });
  r.set("blixt_agent_map_capacity", "Capacity.", { labels: { map: "backends" }, value: 131071 });
  r.observe("blixt_agent_sync_duration_seconds", "Sync time.", {
    value: 0.003,
    buckets: [0.001, 0.01],
  });
  assert.equal(
    r.render(),
    [
      "# HELP blixt_agent_syncs_total Syncs.",
      "# TYPE blixt_agent_syncs_total counter",
      'blixt_agent_syncs_total{result="ok"} 2',
      "# HELP blixt_agent_map_capacity Capacity.",
      "# TYPE blixt_agent_map_capacity gauge",
      'blixt_agent_map_capacity{map="backends"} 131071',
      "# HELP blixt_agent_sync_duration_seconds Sync time.",
      "# TYPE blixt_agent_sync_duration_seconds histogram",
      'blixt_agent_sync_duration_seconds_bucket{le="0.001"} 0',
      'blixt_agent_sync_duration_seconds_bucket{le="0.01"} 1',
      'blixt_agent_sync_duration_seconds_bucket{le="+Inf"} 1',
      "blixt_agent_sync_duration_seconds_sum 0.003",
      "blixt_agent_sync_duration_seconds_count 1",
      "",
    ].join("\n"),
  );
});

Deno.test("metrics: renderAsync waits for a collector that reads in steps, the loop free between them", async () => {
  const r = new Registry();
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  try {
    r.collect(() => r.set("a", "A.", { value: 1 }));
    r.collect(async () => {
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 2));
      r.set("b", "B.", { value: ticks > 0 ? 2 : 0 });
    });
    const text = await r.renderAsync();
    assert.match(text, /^a 1$/m);
    assert.match(text, /^b 2$/m, "the loop ran while the collector waited");
  } finally {
    clearInterval(timer);
  }
});
