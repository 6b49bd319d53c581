/**
 * Reading a child process's stdout one line at a time, for tests that drive
 * a long-lived helper (bpf/testing/line_client.ts, udp_pinger.ts).
 *
 * @module
 */

/** Returns a function that resolves to the child's next stdout line (without its newline). */
export function lineReader(child: Deno.ChildProcess): () => Promise<string> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  return async () => {
    while (!buf.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("child closed stdout");
      buf += value;
    }
    const i = buf.indexOf("\n");
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    return line;
  };
}
