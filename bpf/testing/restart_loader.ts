/**
 * A loader run as its own process, as the agent would after a restart: loads
 * the data plane reusing the maps pinned in PIN_DIR, attaches to IFACE in
 * NETNS (the pinned links get the new program) and exits. Prints the mode.
 *
 * deno run -A restart_loader.ts PIN_DIR NETNS_PATH IFACE CT_ENTRIES
 *
 * @module
 */

import { Dataplane } from "../../agent/bpf/loader.ts";

if (import.meta.main) {
  const [pinDir, netns, iface, ct] = Deno.args;
  if (!pinDir || !netns || !iface) {
    throw new Error("usage: PIN_DIR NETNS_PATH IFACE [CT_ENTRIES]");
  }
  const dp = Dataplane.load({ pinDir, conntrackEntries: Number(ct ?? 0) || 0 });
  try {
    console.log(dp.attach(iface, { netns }));
  } finally {
    dp.close();
  }
}
