/**
 * Structured log lines of the Kubernetes layer: one JSON object a line, so
 * the operator's and the agent's logs stay machine-readable.
 *
 * @module
 */

/** How much a log line matters; `debug` is left out by {@link jsonLog}. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** One log line: a level, a message and fields (resource, error, timings). */
export interface LogEntry {
  level: LogLevel;
  msg: string;
  [field: string]: unknown;
}

/** Receives the log lines of an informer or a leader elector. */
export type Log = (entry: LogEntry) => void;

/** The default {@link Log}: `info` and above as JSON lines on stderr, with a timestamp. */
export function jsonLog(entry: LogEntry): void {
  if (entry.level === "debug") return;
  console.error(JSON.stringify({ time: new Date().toISOString(), ...entry }));
}

/** The message of an error, for a log field. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
