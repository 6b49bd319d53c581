/**
 * Shared kept-alive connections against the real API server: requests reuse
 * one connection instead of a TLS handshake each, a connection the API server
 * dropped (kill -9, restart) is replaced without failing a request, and
 * close() leaves nothing open (the test sanitizers check it).
 */

import assert from "node:assert/strict";
import { shareConnections } from "./client.ts";
import { requestJson } from "./rest.ts";
import { eventually, killApiServer } from "./_testing.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";

const CLUSTER = "kube-test-pool";

/**
 * Established TCP connections of this process to `server` (`https://ip:port`):
 * /proc/net/tcp's sockets whose inode is one of our open files (the API
 * server's own loopback clients connect to the same address).
 */
async function connectionsTo(server: string): Promise<number> {
  const url = new URL(server);
  const hex = (n: number, width: number) => n.toString(16).toUpperCase().padStart(width, "0");
  // /proc/net/tcp writes the IPv4 address as a little-endian 32-bit word
  const ip = url.hostname.split(".").map(Number).reverse().map((b) => hex(b, 2)).join("");
  const remote = `${ip}:${hex(Number(url.port || 443), 4)}`;
  const ours = new Set<string>();
  for await (const fd of Deno.readDir("/proc/self/fd")) {
    const link = await Deno.readLink(`/proc/self/fd/${fd.name}`).catch(() => "");
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (inode) ours.add(inode);
  }
  const lines = (await Deno.readTextFile("/proc/net/tcp")).split("\n").slice(1);
  return lines.filter((line) => {
    const f = line.trim().split(/\s+/);
    // rem_address, state ESTABLISHED, inode
    return f[2] === remote && f[3] === "01" && ours.has(f[9] ?? "");
  }).length;
}

Deno.test("shared connections: kept alive across requests, replaced after an API server restart, closed by close()", async (t) => {
  try {
    const cluster = await clusterUp({ name: CLUSTER, nodes: 1 });
    const kc = cluster.kubeConfig();
    const server = kc.getCurrentCluster()!.server;
    const ns = "/api/v1/namespaces/default";

    await t.step("without sharing, no connection outlives its request", async () => {
      for (let i = 0; i < 3; i++) await requestJson(kc, ns);
      await eventually("no connection open", async () => await connectionsTo(server) === 0);
    });

    const connections = shareConnections(kc);
    try {
      await t.step("shared: ten requests in a row go over one kept-alive connection", async () => {
        for (let i = 0; i < 10; i++) await requestJson(kc, ns);
        assert.equal(await connectionsTo(server), 1);
        // and concurrent requests open more, which stay for the next burst
        await Promise.all(Array.from({ length: 4 }, () => requestJson(kc, ns)));
        const open = await connectionsTo(server);
        assert.ok(open >= 1 && open <= 4, `${open} connections`);
      });

      await t.step(
        "the API server killed and restarted: the next request still succeeds",
        async () => {
          await killApiServer(cluster);
          await clusterUp({ name: CLUSTER, nodes: 1 });
          const got = await requestJson<{ metadata?: { name?: string } }>(kc, ns);
          assert.equal(got.metadata?.name, "default");
          for (let i = 0; i < 5; i++) await requestJson(kc, ns);
          assert.equal(await connectionsTo(server), 1);
        },
      );
    } finally {
      connections.close();
    }

    await t.step("after close(), nothing is left open", async () => {
      await eventually("no connection open", async () => await connectionsTo(server) === 0);
      await requestJson(kc, ns); // and requests go on, each on its own connection
      await eventually("no connection open", async () => await connectionsTo(server) === 0);
    });
  } finally {
    await clusterDown(CLUSTER);
  }
});
