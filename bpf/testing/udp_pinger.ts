/**
 * A UDP client for traffic tests that keeps one flow: from one socket it sends `<seq>` to
 * HOST:PORT every INTERVAL ms, and prints `<seq> <Date.now()> <answer>` for every answer,
 * so a test sees when a flow stops and starts being answered.
 *
 * deno run -A --unstable-net udp_pinger.ts HOST PORT [INTERVAL]
 *
 * @module
 */

if (import.meta.main) {
  const [host = "127.0.0.1", port = "53", interval = "50"] = Deno.args;
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 0 });
  const to: Deno.NetAddr = { transport: "udp", hostname: host, port: Number(port) };
  let seq = 0;
  const timer = setInterval(() => {
    sock.send(new TextEncoder().encode(String(seq++)), to).catch(() => {});
  }, Number(interval));
  try {
    for await (const [data] of sock) {
      const answer = new TextDecoder().decode(data).trim();
      const sent = Number(answer.split(" ").pop());
      console.log(`${sent} ${Date.now()} ${answer}`);
    }
  } finally {
    clearInterval(timer);
  }
}
