/**
 * The agent in the local cluster, as a user sees it: RoutingTables written
 * by hand (no operator), one agent per node inside the node's namespace,
 * traffic from the host to the VIP, DataplaneNode status and /metrics.
 */
import assert from "node:assert/strict";
import { buildBpf } from "../bpf/build.ts";
import { clusterDown, clusterUp } from "../tests/cluster/cluster.ts";
import { tcpEcho, udpEcho } from "../tests/cluster/echo_client.ts";
import {
  type Backend,
  formatEndpoint,
  formatRouteRef,
  formatServiceRef,
  type RoutingTable,
  serviceCountersOf,
} from "../api/mod.ts";
import {
  AgentProcess,
  applyTable,
  dataplaneNode,
  deleteTable,
  eventually,
  installCrds,
  tcpProbe,
} from "./_cluster_testing.ts";

const NAME = "agent-test";

function vipOf(pool: string, host: number): string {
  return pool.replace(/\.0\/24$/, `.${host}`);
}

function rt(
  name: string,
  vip: string,
  entries: { port: number; protocol?: "TCP" | "UDP"; backends: Backend[] }[],
): RoutingTable {
  return {
    apiVersion: "blixt.dev/v1alpha1",
    kind: "RoutingTable",
    metadata: { name, namespace: "default" },
    spec: {
      addresses: [vip],
      entries: entries.map((e) => ({
        address: vip,
        port: e.port,
        protocol: e.protocol ?? "TCP",
        listener: `l${e.port}`,
        backends: e.backends,
        rejectWeight: 0,
      })),
    },
  };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ${what} in ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A TCP connection sending one line at a time and reading the reply. */
class LineConn {
  #buf = "";
  private constructor(readonly conn: Deno.TcpConn) {}
  static async open(host: string, port: number): Promise<LineConn> {
    return new LineConn(await Deno.connect({ hostname: host, port }));
  }
  async say(text: string): Promise<string> {
    await this.conn.write(new TextEncoder().encode(text + "\n"));
    const chunk = new Uint8Array(65536);
    while (!this.#buf.includes("\n")) {
      const n = await withTimeout(this.conn.read(chunk), 3_000, `reply to ${text}`);
      if (n === null) throw new Error("connection closed");
      this.#buf += new TextDecoder().decode(chunk.subarray(0, n));
    }
    const line = this.#buf.slice(0, this.#buf.indexOf("\n"));
    this.#buf = this.#buf.slice(line.length + 1);
    return line;
  }
  close(): void {
    this.conn.close();
  }
}

const podOf = (reply: string) => reply.split(" ")[0]!;

Deno.test("agent in the local cluster", async (t) => {
  await buildBpf();
  const cluster = await clusterUp({ name: NAME, nodes: 2 });
  const agents: AgentProcess[] = [];
  const conns: LineConn[] = [];
  try {
    const kc = cluster.kubeConfig();
    await installCrds(kc);
    const [n1, n2] = [cluster.nodes[0]!, cluster.nodes[1]!];
    const [a, b, c] = await Promise.all([
      cluster.createPod({ name: "echo-a", node: n1.name }),
      cluster.createPod({ name: "echo-b", node: n2.name }),
      cluster.createPod({ name: "echo-c", node: n2.name }),
    ]);
    const be = (p: { ip: string; node: string }, weight = 1): Backend => ({
      ip: p.ip,
      port: 8080,
      weight,
      node: p.node,
      state: "Ready",
    });
    const vip = vipOf(cluster.plan.gatewayPool, 10);
    agents.push(AgentProcess.start(cluster, 0), AgentProcess.start(cluster, 1));
    await Promise.all(agents.map((a) => a.started()));

    await t.step(
      "a RoutingTable by hand: traffic to the VIP reaches the pods; DataplaneNode reports the generation",
      async () => {
        const gen = await applyTable(
          kc,
          rt("gw", vip, [
            { port: 80, backends: [be(a), be(b)] },
            { port: 53, protocol: "UDP", backends: [be(c)] },
          ]),
        );
        for (const node of [n1, n2]) {
          await eventually(`${node.name} reports gw generation ${gen}`, async () => {
            const dn = await dataplaneNode(kc, node.name);
            const ts = dn?.status?.tables?.find((x) => x.name === "gw");
            return ts?.programmedGeneration === gen &&
              dn?.status?.conditions?.find((x) => x.type === "Ready")?.status === "True";
          });
        }
        const seen = new Set<string>();
        for (let i = 0; i < 40 && seen.size < 2; i++) {
          seen.add(podOf(await tcpEcho(vip, 80, `hello ${i}`)));
        }
        assert.deepEqual([...seen].sort(), ["echo-a", "echo-b"]);
        assert.equal(podOf(await udpEcho(vip, 53, "dns?")), "echo-c");
        const dn = (await dataplaneNode(kc, n1.name))!;
        assert.ok(dn.status!.lastSyncTime, "lastSyncTime is set");
        assert.deepEqual(dn.status!.maps!.find((m) => m.name === "backends")?.entries, 3);
        assert.deepEqual(dn.status!.tables!.map((x) => [x.name, x.entries, x.backends]), [[
          "gw",
          2,
          3,
        ]]);
      },
    );

    await t.step(
      "table changes are followed within a second; an open connection to a surviving backend stays",
      async () => {
        // find a connection that lands on echo-a
        let conn: LineConn | undefined;
        for (let i = 0; i < 40 && !conn; i++) {
          const cand = await LineConn.open(vip, 80);
          if (podOf(await cand.say("who")) === "echo-a") conn = cand;
          else cand.close();
        }
        assert.ok(conn, "a connection to echo-a");
        conns.push(conn);
        const changes: [string, Backend[], string[]][] = [
          ["remove echo-b", [be(a)], ["echo-a"]],
          ["add echo-c", [be(a), be(c)], ["echo-a", "echo-c"]],
          ["weight 0 for echo-a", [be(a, 0), be(c)], ["echo-c"]],
        ];
        for (const [what, backends, want] of changes) {
          const started = Date.now();
          await applyTable(
            kc,
            rt("gw", vip, [
              { port: 80, backends },
              { port: 53, protocol: "UDP", backends: [be(c)] },
            ]),
          );
          await eventually(`${what}: new connections reach ${want}`, async () => {
            const got = new Set<string>();
            for (let i = 0; i < 12; i++) got.add(podOf(await tcpEcho(vip, 80, what)));
            return [...got].sort().join() === want.join();
          }, { timeoutMs: 5_000, intervalMs: 20 });
          const took = Date.now() - started;
          assert.ok(took < 1_000 + 12 * 50, `${what} took ${took} ms`);
          assert.equal(podOf(await conn.say(`still there after ${what}`)), "echo-a");
        }
        await applyTable(kc, rt("gw", vip, [{ port: 53, protocol: "UDP", backends: [be(c)] }]));
        await eventually(
          "removed entry: TCP to port 80 reaches no pod",
          async () => await tcpProbe(vip, 80, "gone?", 300) === undefined,
        );
        assert.equal(podOf(await udpEcho(vip, 53, "still")), "echo-c", "the other entry stays");
      },
    );

    await t.step(
      "a table with backends as endpoint strings, or compact, is programmed as with objects",
      async () => {
        const vip3 = vipOf(cluster.plan.gatewayPool, 13);
        const compact = rt("strings", vip3, [{ port: 80, backends: [] }]);
        // what the operator writes once every agent lists the `endpoints` feature
        compact.spec.entries[0]!.endpoints = [be(a), be(b)].map((x) => formatEndpoint(x)!);
        const gen = await applyTable(kc, compact);
        await eventually("n1 and n2 program the table", async () => {
          for (const node of [n1, n2]) {
            const ts = (await dataplaneNode(kc, node.name))?.status?.tables
              ?.find((x) => x.name === "strings");
            if (ts?.programmedGeneration !== gen || ts.backends !== 2) return false;
          }
          return true;
        });
        const seen = new Set<string>();
        for (let i = 0; i < 40 && seen.size < 2; i++) {
          seen.add(podOf(await tcpEcho(vip3, 80, `strings ${i}`)));
        }
        assert.deepEqual([...seen].sort(), ["echo-a", "echo-b"]);

        // and compact, once every agent lists `compactEntries`: route and Service one string
        // each, no `backends`; only b now, so the new generation shows in the traffic
        const { backends: _, ...entry } = compact.spec.entries[0]!;
        const compacter = {
          ...compact,
          spec: {
            ...compact.spec,
            entries: [{
              ...entry,
              routeRef: formatRouteRef({ kind: "TCPRoute", namespace: "default", name: "web" })!,
              serviceRef: formatServiceRef({ namespace: "default", name: "web", port: 80 })!,
              endpoints: [formatEndpoint(be(b))!],
            }],
          },
        } as unknown as RoutingTable;
        const gen2 = await applyTable(kc, compacter);
        await eventually("n1 and n2 program the compact table", async () => {
          for (const node of [n1, n2]) {
            const ts = (await dataplaneNode(kc, node.name))?.status?.tables
              ?.find((x) => x.name === "strings");
            if (ts?.programmedGeneration !== gen2 || ts.backends !== 1 || ts.errors?.length) {
              return false;
            }
          }
          return true;
        });
        for (let i = 0; i < 10; i++) {
          assert.equal(podOf(await tcpEcho(vip3, 80, `compact ${i}`)), "echo-b");
        }
        await deleteTable(kc, "default", "strings");
      },
    );

    await t.step(
      "invalid and conflicting tables are reported, nothing of them is programmed, the agent runs on",
      async () => {
        const vip2 = vipOf(cluster.plan.gatewayPool, 11);
        // Schema-valid, so the API server takes it; the entry's address is not the table's.
        const bad = rt("bad", vip2, [{ port: 80, backends: [be(a)] }]);
        bad.spec.addresses = [vipOf(cluster.plan.gatewayPool, 12)];
        const genBad = await applyTable(kc, bad);
        await applyTable(
          kc,
          rt("one", vip2, [{ port: 81, backends: [be(a)] }, { port: 82, backends: [be(b)] }]),
        );
        await applyTable(kc, rt("two", vip2, [{ port: 82, backends: [be(c)] }]));
        const dn = await eventually("n1 reports the bad and conflicting tables", async () => {
          const d = await dataplaneNode(kc, n1.name);
          const names = d?.status?.tables?.map((x) => x.name) ?? [];
          return ["bad", "one", "two"].every((n) => names.includes(n)) && d;
        });
        const table = (n: string) => dn.status!.tables!.find((x) => x.name === n)!;
        assert.equal(table("bad").observedGeneration, genBad);
        assert.equal(table("bad").programmedGeneration, undefined);
        assert.match(
          table("bad").errors![0]!,
          /spec\.entries\[0\]\.address: must be one of spec\.addresses/,
        );
        assert.deepEqual(table("one").errors, [
          `frontend ${vip2}:82/TCP is also claimed by default/two`,
        ]);
        const degraded = dn.status!.conditions!.find((x) => x.type === "Degraded")!;
        assert.equal(degraded.status, "True");
        assert.ok(["TableInvalid", "FrontendConflict"].includes(degraded.reason));
        assert.equal(podOf(await tcpEcho(vip2, 81, "ok")), "echo-a", "the rest of table one works");
        assert.equal(await tcpProbe(vip2, 82, "x"), undefined, "conflicted frontend: not served");
        assert.equal(await tcpProbe(vip2, 80, "x"), undefined, "invalid table: not served");
        assert.equal(podOf(await udpEcho(vip, 53, "still")), "echo-c", "other tables keep working");
        for (const n of ["bad", "one", "two"]) await deleteTable(kc, "default", n);
      },
    );

    await t.step(
      "kill -9 during a TCP exchange and a UDP flow: no reset, same UDP backend, changes made while down applied",
      async () => {
        await applyTable(
          kc,
          rt("gw", vip, [
            { port: 80, backends: [be(a), be(b)] },
            { port: 53, protocol: "UDP", backends: [be(a), be(b), be(c)] },
          ]),
        );
        await eventually("both backends serve", async () => {
          const got = new Set<string>();
          for (let i = 0; i < 16; i++) got.add(podOf(await tcpEcho(vip, 80, "x")));
          return got.size === 2;
        });
        const tcp = await LineConn.open(vip, 80);
        conns.push(tcp);
        const tcpPod = podOf(await tcp.say("before"));
        const udp = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });
        const udpSay = async (text: string) => {
          await udp.send(new TextEncoder().encode(text), {
            hostname: vip,
            port: 53,
            transport: "udp",
          });
          const [data] = await withTimeout(udp.receive(), 3_000, `reply to ${text}`);
          return new TextDecoder().decode(data);
        };
        try {
          const udpPod = podOf(await udpSay("before"));
          let running = true;
          const traffic = (async () => {
            let i = 0;
            while (running) {
              assert.equal(podOf(await tcp.say(`line ${i}`)), tcpPod);
              assert.equal(podOf(await udpSay(`dgram ${i}`)), udpPod);
              i++;
            }
            return i;
          })();
          for (const agent of agents.splice(0)) await agent.kill("SIGKILL");
          const downGen = await applyTable(
            kc,
            rt("gw", vip, [
              { port: 80, backends: [be(a), be(b)] },
              { port: 53, protocol: "UDP", backends: [be(a), be(b), be(c)] },
              { port: 8080, backends: [be(c)] },
            ]),
          );
          await new Promise((r) => setTimeout(r, 1_000));
          agents.push(AgentProcess.start(cluster, 0), AgentProcess.start(cluster, 1));
          await Promise.all(agents.map((a) => a.started()));
          for (const node of [n1, n2]) {
            await eventually(`${node.name} reports generation ${downGen}`, async () => {
              const dn = await dataplaneNode(kc, node.name);
              return dn?.status?.tables?.find((x) => x.name === "gw")?.programmedGeneration ===
                downGen;
            });
          }
          const served = podOf(await tcpEcho(vip, 8080, "new"));
          assert.equal(served, "echo-c");
          for (const agent of agents) {
            const synced = await eventually(
              "the restarted agent's first sync",
              () => agent.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "maps synced"),
            );
            assert.deepEqual(
              [synced.added, synced.changed, synced.removed],
              [1, 0, 0],
              "it adopted the pinned maps: only the entry made while it was down is written",
            );
          }
          await new Promise((r) => setTimeout(r, 500));
          running = false;
          assert.ok((await traffic) > 10, "traffic kept flowing");
          assert.equal(podOf(await tcp.say("after")), tcpPod);
          assert.equal(podOf(await udpSay("after")), udpPod);
        } finally {
          udp.close();
        }
      },
    );

    await t.step("/metrics, /healthz and /readyz answer", async () => {
      const agent = agents[0]!;
      await eventually("ready", async () => (await agent.get("/readyz"))[0] === 200);
      assert.equal((await agent.get("/healthz"))[0], 200);
      const [, text] = await agent.get("/metrics");
      assert.match(text, /^blixt_agent_tables\{result="programmed"\} 1$/m);
      assert.match(text, /^blixt_agent_map_entries\{map="maglev"\} 3$/m);
      assert.match(text, /^blixt_agent_heap_used_bytes [1-9]\d*$/m);
      assert.match(text, /^process_resident_memory_bytes [1-9]\d*$/m);
      // The host's ECMP route sends the flows to one node or the other: one of them counted.
      const both = text + (await agents[1]!.get("/metrics"))[1];
      const frontend = `${vip}:80/TCP`.replaceAll(".", "\\.");
      assert.match(
        both,
        new RegExp(`^blixt_service_packets_total\\{frontend="${frontend}"\\} [1-9]\\d*$`, "m"),
      );
      assert.match(
        both,
        new RegExp(
          `^blixt_backend_new_flows_total\\{frontend="${frontend}",backend="[\\d.]+:8080"\\} [1-9]`,
          "m",
        ),
      );
      assert.match(text, /^blixt_agent_sync_duration_seconds_count \d+$/m);
    });

    await t.step("DataplaneNode counters show the traffic within 10 s", async () => {
      await tcpEcho(vip, 80, "count me");
      const counted = await eventually("a node's status counts VIP:80", async () => {
        for (const node of [n1, n2]) {
          const dn = await dataplaneNode(kc, node.name);
          const counters = dn?.status?.counters;
          const svc = counters &&
            serviceCountersOf(counters).find((s) => s.address === vip && s.port === 80);
          if (svc && svc.packets > 0) {
            // written compact: one string per frontend and backend, the objects' list empty
            assert.deepEqual(counters.services, []);
            assert.ok(counters.frontends?.some((f) => f.service.startsWith(`${vip} 80 TCP `)));
            return svc;
          }
        }
        return undefined;
      }, { timeoutMs: 15_000, intervalMs: 500 });
      assert.ok(counted.newFlows > 0);
      assert.ok(counted.backends.some((b) => b.port === 8080 && b.newFlows > 0));
    });

    await t.step("API server restart: the agents re-list and converge", async () => {
      const state = JSON.parse(await Deno.readTextFile(`${cluster.dir}/cluster.json`));
      Deno.kill(state.apiserverPid, "SIGKILL");
      await new Promise((r) => setTimeout(r, 1_000));
      await clusterUp({ name: NAME, nodes: 2 });
      const gen = await applyTable(
        kc,
        rt("gw", vip, [
          { port: 80, backends: [be(b)] },
          { port: 53, protocol: "UDP", backends: [be(a), be(b), be(c)] },
          { port: 8080, backends: [be(c)] },
        ]),
      );
      await eventually("new connections reach only echo-b", async () => {
        const got = new Set<string>();
        for (let i = 0; i < 8; i++) got.add(podOf(await tcpEcho(vip, 80, "after restart")));
        return [...got].join() === "echo-b";
      }, { timeoutMs: 30_000, intervalMs: 200 });
      for (const node of [n1, n2]) {
        await eventually(`${node.name} reports generation ${gen}`, async () => {
          const dn = await dataplaneNode(kc, node.name);
          return dn?.status?.tables?.find((x) => x.name === "gw")?.programmedGeneration === gen;
        }, { timeoutMs: 30_000, intervalMs: 200 });
      }
      assert.equal(await agents[0]!.exited(), false);
    });
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    for (const agent of agents) await agent.kill("SIGKILL");
    await clusterDown(NAME);
  }
});
