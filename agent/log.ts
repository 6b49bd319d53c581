/**
 * Structured logs: one JSON object a line on stderr, with the node (and the
 * table, when there is one) in every line that concerns them.
 *
 * @module
 */

/** Severity of a log line. */
export type Level = "debug" | "info" | "warn" | "error";

/** Writes one event; `fields` are merged into the line. */
export type Logger = (level: Level, msg: string, fields?: Record<string, unknown>) => void;

const encoder = new TextEncoder();

/**
 * A logger writing JSON lines to stderr with `base` fields (e.g. the node)
 * in every line; lines below `minLevel` are dropped.
 *
 * @example
 * ```ts
 * const log = jsonLogger({ node: "node-1" });
 * log("info", "table programmed", { table: "default/gw", generation: 3 });
 * ```
 */
export function jsonLogger(
  base: Record<string, unknown>,
  options: { minLevel?: Level; write?: (line: string) => void } = {},
): Logger {
  const order: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  const min = order[options.minLevel ?? "info"];
  const write = options.write ?? ((line: string) => Deno.stderr.writeSync(encoder.encode(line)));
  return (level, msg, fields) => {
    if (order[level] < min) return;
    write(
      JSON.stringify({ time: new Date().toISOString(), level, msg, ...base, ...fields }) + "\n",
    );
  };
}

/** The message of an error, without a stack. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
