/**
 * kubectl's flag conventions for kubectl-blixt: `-n/--namespace`,
 * `-A/--all-namespaces`, `--kubeconfig`, `--context`, `-o/--output`,
 * `--no-headers`, `-h/--help`, in any position, with pflag's spellings
 * (`-o json`, `-ojson`, `-o=json`, `--output=json`, `--no-headers=false`).
 *
 * @module
 */
import { parseArgs } from "node:util";

/** Output formats of `-o`. */
export const OUTPUT_FORMATS = ["table", "wide", "json", "yaml"] as const;
/** One of {@linkcode OUTPUT_FORMATS}. */
export type OutputFormat = typeof OUTPUT_FORMATS[number];

/** The parsed command line. */
export interface Flags {
  /** Positional arguments: the command and its operands. */
  args: string[];
  /** `-n`; undefined means the context's namespace. */
  namespace: string | undefined;
  /** `-A`. */
  allNamespaces: boolean;
  /** `--kubeconfig`. */
  kubeconfig: string | undefined;
  /** `--context`. */
  context: string | undefined;
  /** `-o`, `table` when not given. */
  output: OutputFormat;
  /** `--no-headers`. */
  noHeaders: boolean;
  /** `-h`. */
  help: boolean;
  /** `version --client`. */
  client: boolean;
}

/** A command line that cannot be understood; exit code 2. */
export class UsageError extends Error {
  /** Creates it. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const OPTIONS = {
  namespace: { type: "string", short: "n" },
  "all-namespaces": { type: "boolean", short: "A" },
  kubeconfig: { type: "string" },
  context: { type: "string" },
  output: { type: "string", short: "o" },
  "no-headers": { type: "boolean" },
  help: { type: "boolean", short: "h" },
  client: { type: "boolean" },
} as const;

const SHORT_TO_LONG: Record<string, string> = Object.fromEntries(
  Object.entries(OPTIONS).flatMap(([long, o]) => "short" in o ? [[o.short, long]] : []),
);

/** Rewrites pflag spellings that node's parseArgs does not know. */
function normalize(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    // -n=foo -> --namespace=foo
    const short = /^-([a-zA-Z])=(.*)$/s.exec(arg);
    if (short && SHORT_TO_LONG[short[1] as string]) {
      out.push(`--${SHORT_TO_LONG[short[1] as string]}=${short[2]}`);
      continue;
    }
    // --no-headers=true|false: booleans take an optional value in pflag
    const bool = /^--([a-z-]+)=(true|false)$/.exec(arg);
    const opt = bool && OPTIONS[bool[1] as keyof typeof OPTIONS];
    if (bool && opt?.type === "boolean") {
      if (bool[2] === "true") out.push(`--${bool[1]}`);
      continue;
    }
    out.push(arg);
  }
  return out;
}

/**
 * Parses a kubectl-blixt command line. Throws {@linkcode UsageError} with a
 * kubectl-like message for unknown flags, missing values and bad formats.
 *
 * @example
 * ```ts
 * parseFlags(["status", "gw", "-n", "apps", "-ojson"]).output; // "json"
 * ```
 */
export function parseFlags(argv: readonly string[]): Flags {
  let parsed;
  try {
    parsed = parseArgs({
      args: normalize(argv),
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError(flagMessage(err));
  }
  const v = parsed.values;
  const output = v.output ?? "table";
  if (!(OUTPUT_FORMATS as readonly string[]).includes(output)) {
    throw new UsageError(
      `unable to match a printer suitable for the output format "${output}", allowed formats are: ${
        OUTPUT_FORMATS.join(",")
      }`,
    );
  }
  if (v.namespace === "") throw new UsageError("flag -n/--namespace needs a non-empty value");
  return {
    args: parsed.positionals,
    namespace: v.namespace,
    allNamespaces: v["all-namespaces"] ?? false,
    kubeconfig: v.kubeconfig,
    context: v.context,
    output: output as OutputFormat,
    noHeaders: v["no-headers"] ?? false,
    help: v.help ?? false,
    client: v.client ?? false,
  };
}

function flagMessage(err: unknown): string {
  const code = (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  const option = /'(-[^' ]+)/.exec(message)?.[1] ?? "";
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return option.startsWith("--")
        ? `unknown flag: ${option}`
        : `unknown shorthand flag: '${option.slice(1, 2)}' in ${option}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return message.includes("argument missing")
        ? `flag needs an argument: ${/--[a-z-]+/.exec(message)?.[0] ?? option}`
        : `flag does not take a value: ${option}`;
    default:
      return message;
  }
}
