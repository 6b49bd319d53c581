/**
 * Tables the way `kubectl get` prints them: upper-case headers, columns
 * padded by three spaces (at least six wide, as kubectl's tabwriter), the
 * last column unpadded, `<none>` for an empty cell, ages like `5m` and
 * `3h12m`, and colour only when asked for.
 *
 * @module
 */

/** Colours a cell may ask for; the renderer drops them when colour is off. */
export type Color = "green" | "yellow" | "red" | "dim";

/** A table cell: text, or text with a colour. */
export type Cell = string | { text: string; color?: Color | undefined };

/** A table: its headers and rows of the same length. */
export interface Table {
  /** Column headers, upper case. */
  headers: string[];
  /** Rows, one cell per header. */
  rows: Cell[][];
}

const ANSI: Record<Color, string> = {
  green: "\x1b[32m",
  yellow: "\x1b[33m",
  red: "\x1b[31m",
  dim: "\x1b[2m",
};
const RESET = "\x1b[0m";

/** What kubectl prints for a value that is not there. */
export const NONE = "<none>";
/** What kubectl prints for a value that cannot be known. */
export const UNKNOWN = "<unknown>";

function cellText(cell: Cell): string {
  const text = typeof cell === "string" ? cell : cell.text;
  return text === "" ? NONE : text;
}

/**
 * Renders a table as text, one line per row, each ending in a newline.
 *
 * @example
 * ```ts
 * renderTable({ headers: ["NAME", "AGE"], rows: [["gw", "5m"]] }, { noHeaders: false, color: false });
 * // "NAME   AGE\ngw     5m\n"
 * ```
 */
export function renderTable(
  table: Table,
  options: { noHeaders: boolean; color: boolean },
): string {
  const lines: Cell[][] = options.noHeaders ? table.rows : [table.headers, ...table.rows];
  if (lines.length === 0) return "";
  const columns = table.headers.length;
  const widths: number[] = [];
  for (let c = 0; c < columns - 1; c++) {
    const longest = Math.max(...lines.map((l) => cellText(l[c] ?? "").length));
    // kubectl's tabwriter: minwidth 6, padding 3
    widths.push(Math.max(longest + 3, 6));
  }
  let out = "";
  for (const line of lines) {
    let text = "";
    for (let c = 0; c < columns; c++) {
      const cell = line[c] ?? "";
      const plain = cellText(cell);
      const color = typeof cell === "string" ? undefined : cell.color;
      const shown = options.color && color !== undefined ? `${ANSI[color]}${plain}${RESET}` : plain;
      const width = widths[c];
      text += width === undefined ? shown : shown + " ".repeat(width - plain.length);
    }
    out += text + "\n";
  }
  return out;
}

/**
 * Whether to colour output, as kubectl-like tools decide: only on a
 * terminal, never with `NO_COLOR` set (any value, see no-color.org) or
 * `TERM=dumb`.
 */
export function useColor(
  isTerminal: boolean,
  env: { get(name: string): string | undefined },
): boolean {
  if (!isTerminal) return false;
  if ((env.get("NO_COLOR") ?? "") !== "") return false;
  return env.get("TERM") !== "dumb";
}

/**
 * A duration as `kubectl get` shows ages (apimachinery's HumanDuration):
 * `45s`, `2m30s`, `5m`, `3h12m`, `10h`, `3d4h`, `40d`, `2y30d`.
 */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  const days = Math.trunc(hours / 24);
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${days}d` : `${days}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.trunc(days / 365);
  if (hours < 24 * 365 * 8) {
    const d = days % 365;
    return d === 0 ? `${years}y` : `${years}y${d}d`;
  }
  return `${years}y`;
}

/**
 * Age of an RFC 3339 timestamp at `now`, or `<unknown>` when absent,
 * unreadable, or the Unix epoch: the Gateway API CRDs default a status no
 * controller has written to conditions "Waiting for controller" at
 * 1970-01-01T00:00:00Z, a placeholder, not a time anything happened.
 */
export function age(timestamp: string | undefined, now: Date): string {
  if (timestamp === undefined) return UNKNOWN;
  const t = Date.parse(timestamp);
  return Number.isNaN(t) || t === 0 ? UNKNOWN : humanDuration(now.getTime() - t);
}

/** A share (0-1) as a percentage with at most one decimal: `37.5%`, `100%`. */
export function percent(share: number): string {
  return `${Math.round(share * 1000) / 10}%`;
}
