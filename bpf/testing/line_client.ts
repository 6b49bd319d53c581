/**
 * A long-lived TCP client for traffic tests: connects to HOST:PORT, then for
 * every line on stdin sends it and prints the one-line answer (or
 * "error <name>" when the connection broke). Prints "connected" first.
 *
 * deno run -A line_client.ts HOST PORT
 *
 * @module
 */

if (import.meta.main) {
  const [host = "127.0.0.1", port = "80"] = Deno.args;
  const conn = await Deno.connect({ hostname: host, port: Number(port) });
  console.log("connected");
  const reader = conn.readable.getReader();
  let pending = "";
  let input = "";
  for await (const chunk of Deno.stdin.readable) {
    input += new TextDecoder().decode(chunk);
    let nl;
    while ((nl = input.indexOf("\n")) >= 0) {
      const line = input.slice(0, nl);
      input = input.slice(nl + 1);
      try {
        await conn.write(new TextEncoder().encode(`${line}\n`));
        while (!pending.includes("\n")) {
          const { value, done } = await reader.read();
          if (done) throw new Error("closed");
          pending += new TextDecoder().decode(value);
        }
        const end = pending.indexOf("\n");
        console.log(pending.slice(0, end));
        pending = pending.slice(end + 1);
      } catch (e) {
        console.log(`error ${e instanceof Error ? e.name : String(e)}`);
      }
    }
  }
  conn.close();
}
