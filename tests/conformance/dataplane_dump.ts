/**
 * What one node's data plane holds, read from its pinned maps: each frontend
 * with its service id, Maglev table (slots per backend, rejected slots) and
 * counters, the backends it points at, and the program's event counters.
 * The conformance run prints it for every node while a probe keeps failing,
 * which tells a table the agent never wrote from one the operator never sent.
 *
 * Run: `deno run -A tests/conformance/dataplane_dump.ts <pin dir>` (a node's
 * `nodes/<node>/bpffs/blixt` in the local cluster's directory).
 *
 * @module
 */

import { DataplaneMaps } from "../../agent/bpf/maps.ts";
import { type BpfMap, openPinnedMap } from "../../agent/bpf/object.ts";

/** Backend id 0 in a Maglev slot: the slot's share is rejected (bpf/consts.h). */
const REJECT = 0;

/** The node's data plane as text, one frontend a line, then its backends and events. */
export function describeDataplane(pinDir: string): string {
  const open = new Map<string, BpfMap>();
  const maps = new DataplaneMaps({
    map(name: string): BpfMap {
      let m = open.get(name);
      if (!m) {
        m = openPinnedMap(`${pinDir}/${name}`);
        open.set(name, m);
      }
      return m;
    },
  });
  try {
    const lines: string[] = [];
    const { frontends, vips } = maps.listServices();
    const backends = new Map(maps.listBackends().map((b) => [b.id, b]));
    lines.push(`vip markers: ${vips.sort().join(" ") || "none"}`);
    frontends.sort((a, b) =>
      a.address.addr.localeCompare(b.address.addr) || a.address.port - b.address.port
    );
    for (const f of frontends) {
      const { addr, port, protocol } = f.address;
      const e = f.entry;
      const table = maps.readMaglev(e.id);
      const slots = new Map<number, number>();
      for (const id of table) slots.set(id, (slots.get(id) ?? 0) + 1);
      const parts = [...slots].sort(([a], [b]) => a - b).map(([id, n]) => {
        if (id === REJECT) return `reject*${n}`;
        const b = backends.get(id);
        const where = b ? `${b.addr}:${b.port}${b.remote ? " remote" : ""}` : "NO BACKEND SLOT";
        return `#${id} ${where}*${n}`;
      });
      const c = maps.serviceCounters(e.id);
      lines.push(
        `${addr}:${port}/${protocol} service ${e.id} entry tableSize ${e.tableSize} ` +
          `fingerprint ${e.fingerprint.toString(16)}; maglev ${table.length} slots: ` +
          `${parts.join(", ") || "none"}; packets ${c.packets} new flows ${c.new_flows} ` +
          `rejected ${c.rejected}`,
      );
    }
    const events = Object.entries(maps.events()).filter(([, n]) => n > 0n)
      .map(([k, n]) => `${k} ${n}`);
    lines.push(`events: ${events.join(", ") || "none"}`);
    return lines.join("\n");
  } finally {
    for (const m of open.values()) m.close();
  }
}

if (import.meta.main) {
  const dir = Deno.args[0];
  if (!dir) {
    console.error("usage: dataplane_dump.ts <pin dir>");
    Deno.exit(2);
  }
  console.log(describeDataplane(dir));
}
