/**
 * Holds long-lived flows for the node-down test from inside a client network
 * namespace (whose ECMP route hashes on ports, so flows spread over nodes):
 * `flow_holder.ts VIP N` opens N TCP connections to VIP:80 and N UDP flows to
 * VIP:53, prints one JSON line of `{proto, name, peer}` per flow, then on each
 * line read from stdin asks every flow again and prints one JSON line of
 * outcomes (the backend's name, `reset`, `timeout`, or the error).
 *
 * @module
 */
import { LineConnection, UdpFlow } from "../e2e/traffic.ts";

const [vip = "", n = "24"] = Deno.args;
const flows: { proto: string; ask(): Promise<{ name: string; peer: string }> }[] = [];
for (let i = 0; i < Number(n); i++) {
  const tcp = await LineConnection.open(vip, 80);
  flows.push({ proto: "tcp", ask: () => tcp.ask("hold", 2000) });
  const udp = new UdpFlow(vip, 53);
  flows.push({ proto: "udp", ask: () => udp.ask("hold", 2000) });
}
const askAll = () =>
  Promise.all(flows.map(async (f) => {
    try {
      const a = await f.ask();
      return { proto: f.proto, name: a.name, peer: a.peer };
    } catch (e) {
      const s = String(e);
      const name = /closed by the peer|reset|broken pipe/i.test(s)
        ? "reset"
        : /no answer/.test(s)
        ? "timeout"
        : s.slice(0, 80);
      return { proto: f.proto, name, peer: "" };
    }
  }));
console.log(JSON.stringify(await askAll()));
for await (const _ of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  console.log(JSON.stringify(await askAll()));
}
Deno.exit(0);
