/**
 * A small Prometheus registry: counters, gauges and histograms with labels,
 * rendered in the text exposition format (version 0.0.4).
 *
 * @module
 */

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  values: Map<string, { labels: Labels; value: number }>;
  buckets?: number[];
  hist?: Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>;
}

/** Metrics by name, rendered by {@linkcode Registry.render}. */
export class Registry {
  readonly #families = new Map<string, Family>();
  readonly #collectors: (() => void | Promise<void>)[] = [];

  #family(name: string, help: string, type: Family["type"], buckets?: number[]): Family {
    let f = this.#families.get(name);
    if (!f) {
      f = { name, help, type, values: new Map() };
      if (buckets) {
        f.buckets = buckets;
        f.hist = new Map();
      }
      this.#families.set(name, f);
    }
    return f;
  }

  /** Adds `by` to counter `name{labels}`. */
  inc(name: string, help: string, options: { labels?: Labels; by?: number } = {}): void {
    const f = this.#family(name, help, "counter");
    const labels = options.labels ?? {};
    const key = labelText(labels);
    const v = f.values.get(key) ?? { labels, value: 0 };
    v.value += options.by ?? 1;
    f.values.set(key, v);
  }

  /** Sets gauge (or a counter read from elsewhere) `name{labels}`. */
  set(
    name: string,
    help: string,
    options: { labels?: Labels; value: number; type?: "gauge" | "counter" },
  ): void {
    const f = this.#family(name, help, options.type ?? "gauge");
    const labels = options.labels ?? {};
    f.values.set(labelText(labels), { labels, value: options.value });
  }

  /** Drops every series of `name` (before a collector sets the current ones). */
  clear(name: string): void {
    this.#families.get(name)?.values.clear();
  }

  /** Records `value` in histogram `name` with upper bounds `buckets`. */
  observe(name: string, help: string, options: { value: number; buckets: number[] }): void {
    const f = this.#family(name, help, "histogram", options.buckets);
    const h = f.hist!.get("") ?? {
      labels: {},
      counts: new Array(options.buckets.length).fill(0),
      sum: 0,
      count: 0,
    };
    options.buckets.forEach((b, i) => {
      if (options.value <= b) h.counts[i]++;
    });
    h.sum += options.value;
    h.count++;
    f.hist!.set("", h);
  }

  /**
   * Runs `fn` before every render (to refresh gauges read from the maps). A
   * collector that returns a promise (one that reads large maps in steps,
   * letting the loop run between them) is awaited by
   * {@linkcode Registry.renderAsync}; {@linkcode Registry.render} starts it
   * without waiting, so its series there are those of its last run.
   */
  collect(fn: () => void | Promise<void>): void {
    this.#collectors.push(fn);
  }

  /** The text exposition of every metric, after every collector has run (in order). */
  async renderAsync(): Promise<string> {
    for (const fn of this.#collectors) await fn();
    return this.#text();
  }

  /**
   * The text exposition of every metric, after the synchronous collectors
   * (an asynchronous one starts, its series are those of its last run).
   */
  render(): string {
    for (const fn of this.#collectors) fn();
    return this.#text();
  }

  #text(): string {
    const out: string[] = [];
    for (const f of this.#families.values()) {
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      for (const v of f.values.values()) out.push(`${f.name}${labelText(v.labels)} ${v.value}`);
      for (const h of f.hist?.values() ?? []) {
        f.buckets!.forEach((b, i) => {
          out.push(`${f.name}_bucket${labelText({ ...h.labels, le: String(b) })} ${h.counts[i]}`);
        });
        out.push(`${f.name}_bucket${labelText({ ...h.labels, le: "+Inf" })} ${h.count}`);
        out.push(`${f.name}_sum${labelText(h.labels)} ${h.sum}`);
        out.push(`${f.name}_count${labelText(h.labels)} ${h.count}`);
      }
    }
    return out.join("\n") + "\n";
  }
}
