/**
 * The desired state kept from one sync to the next, so that a sync which
 * changes one table costs O(that table) plus a few passes over the tables
 * (not over their 10,000 services):
 *
 * ```
 * tables (parsed once, by identity)
 *   -> claims: frontend -> its table        updated for tables whose frontends changed
 *   -> per table: services without conflicted frontends, errors, outcome
 *                                            recomputed for changed tables only
 *   -> capacity check                        one pass over the tables (usage cached per list)
 *   -> services map, byTable                 updated for changed tables only
 *   -> changes: the frontends touched        the programmer visits only these
 * ```
 *
 * A changed table's services that equal its version before's are those
 * objects again (in its parsed form), so the change list names only the
 * services that changed, and the programmer visits only those.
 *
 * The result is the same as {@linkcode computeDesiredState}'s (a property
 * test holds the two equal). The rare cases stay with the full computation:
 * the set of conflicted frontends changes (the state is rebuilt from
 * scratch), a table does not fit, or a table that is not programmed has no
 * last programming (a restart's fallback to what the maps hold).
 *
 * @module
 */
import {
  add,
  computeDesiredState,
  type DesiredService,
  type DesiredState,
  type DesiredStateOptions,
  fits,
  type ParsedTable,
  parsedTable,
  peakUsage,
  tableName,
  type TableOutcome,
  type Usage,
  usageOf,
} from "./desired_state.ts";

const NONE: DesiredService[] = [];

/** What the tracker remembers of one table. */
interface TableMemo {
  /** `namespace/name`. */
  key: string;
  /** The call that last saw it (a second sighting in one call: a duplicate). */
  stamp: number;
  generation: number;
  parsed: ParsedTable | undefined;
  /** Its last programming (the input, by identity). */
  fallback: DesiredService[];
  /** What it claims: its services when valid, else its fallback. */
  claim: DesiredService[];
  /** Its services, without conflicted frontends. */
  wanted: DesiredService[];
  /** Its fallback, without conflicted frontends. */
  kept: DesiredService[];
  /** What is in the services map for it. */
  final: DesiredService[];
  outcome: TableOutcome;
}

/** Whether two lists hold the same frontends in the same order. */
function sameFrontends(a: readonly DesiredService[], b: readonly DesiredService[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.frontend !== b[i]!.frontend) return false;
  return true;
}

/** Whether two services would be programmed the same. */
function sameService(a: DesiredService, b: DesiredService): boolean {
  if (
    a.frontend !== b.frontend || a.table !== b.table ||
    a.keepClientAddress !== b.keepClientAddress ||
    a.rejectWeight !== b.rejectWeight || a.address.addr !== b.address.addr ||
    a.address.port !== b.address.port || a.address.protocol !== b.address.protocol ||
    a.backends.length !== b.backends.length
  ) return false;
  for (let i = 0; i < a.backends.length; i++) {
    const x = a.backends[i]!, y = b.backends[i]!;
    if (x.addr !== y.addr || x.port !== y.port || x.weight !== y.weight || x.remote !== y.remote) {
      return false;
    }
  }
  return true;
}

/**
 * Puts in `now`, in place, each service of `before` (the table's version before) that equals its
 * new one (same frontend): a table update that changes one entry then hands the programmer one new
 * service, not all of the table's (it skips services by identity), and the parsed table holds no
 * copies of the others. In place: a list beside the parsed one would hold both until the next
 * update. Equal content, so any reader of the parsed table sees the same services.
 */
function reuse(before: readonly DesiredService[], now: DesiredService[]): void {
  if (before.length === 0 || now.length === 0) return;
  const old = new Map<string, DesiredService>();
  for (const s of before) old.set(s.frontend, s);
  for (let i = 0; i < now.length; i++) {
    const o = old.get(now[i]!.frontend);
    if (o !== undefined && o !== now[i] && sameService(o, now[i]!)) now[i] = o;
  }
}

/**
 * Computes desired states one after another, each from the last: only the
 * tables whose parsed form, generation or last programming changed (by
 * identity) are visited. Each state's `services` and `byTable` are the
 * tracker's own maps, and its `changes`, valid until the next
 * {@linkcode DesiredStateTracker.compute}.
 *
 * @example
 * ```ts
 * const tracker = new DesiredStateTracker();
 * const desired = tracker.compute(source.list(), options);
 * programmer.apply(desired); // visits desired.changes only, when it applied the state before
 * ```
 */
export class DesiredStateTracker {
  #memo = new Map<string, TableMemo>();
  /** Tables sorted by key, while no table came or went. */
  #sorted: TableMemo[] = [];
  /** Frontend -> the first table claiming it. */
  #first = new Map<string, string>();
  /** Frontends claimed by more than one table -> every claimant. */
  #multi = new Map<string, Set<string>>();
  #services = new Map<string, DesiredService>();
  #byTable = new Map<string, DesiredService[]>();
  /** The last state computed with the indexes above in step; undefined: rebuild next time. */
  #last: DesiredState | undefined;
  #stamp = 0;

  /** The desired state for `tables`, the same as `computeDesiredState(tables, options)`. */
  compute(tables: readonly unknown[], options: DesiredStateOptions): DesiredState {
    const state = (this.#last && this.#pass(tables, options, false)) ??
      this.#pass(tables, options, true);
    // The last state's change list goes: each would hold the state before it, and so on.
    if (this.#last) delete this.#last.changes;
    if (state) {
      this.#last = state;
      return state;
    }
    this.#last = undefined;
    return computeDesiredState(tables, options);
  }

  #reset(): void {
    this.#memo = new Map();
    this.#sorted = [];
    this.#first = new Map();
    this.#multi = new Map();
    this.#services = new Map();
    this.#byTable = new Map();
  }

  /**
   * One pass; `fresh` builds every index from scratch. Undefined when the
   * case is not one the pass handles (see the module doc): the indexes are
   * then out of step until a fresh pass.
   */
  #pass(
    tables: readonly unknown[],
    options: DesiredStateOptions,
    fresh: boolean,
  ): DesiredState | undefined {
    if (fresh) this.#reset();
    const stamp = ++this.#stamp;
    const memo = this.#memo;
    const dirty: TableMemo[] = [];
    const reclaims: { key: string; old: DesiredService[]; now: DesiredService[] }[] = [];
    let resort = fresh;
    let seen = 0;
    for (const raw of tables) {
      const key = tableName(raw as never);
      const meta =
        (raw as { metadata?: { namespace?: string; name?: string; generation?: number } })
          .metadata;
      const parsed = parsedTable(raw, key, options);
      const fallback = options.lastProgrammed.get(key)?.services ?? NONE;
      const generation = meta?.generation ?? 0;
      let m = memo.get(key);
      if (m?.stamp === stamp) return undefined; // two tables of one name
      if (!m) {
        m = {
          key,
          stamp,
          generation,
          parsed: undefined,
          fallback: NONE,
          claim: NONE,
          wanted: NONE,
          kept: NONE,
          final: NONE,
          outcome: {
            namespace: meta?.namespace ?? "",
            name: meta?.name ?? "",
            generation,
            result: "invalid",
            errors: [],
            entries: 0,
            backends: 0,
          },
        };
        memo.set(key, m);
        resort = true;
      }
      m.stamp = stamp;
      seen++;
      if (m.parsed === parsed && m.fallback === fallback && m.generation === generation) continue;
      if (m.parsed !== parsed && m.parsed?.valid && parsed.valid) {
        reuse(m.parsed.wanted, parsed.wanted);
      }
      const claim = parsed.valid ? parsed.wanted : fallback;
      if (!sameFrontends(m.claim, claim)) reclaims.push({ key, old: m.claim, now: claim });
      m.parsed = parsed;
      m.fallback = fallback;
      m.generation = generation;
      m.claim = claim;
      dirty.push(m);
    }
    const gone: TableMemo[] = [];
    if (memo.size > seen) {
      for (const m of memo.values()) {
        if (m.stamp === stamp) continue;
        gone.push(m);
        reclaims.push({ key: m.key, old: m.claim, now: NONE });
      }
    }
    for (const m of gone) memo.delete(m.key);
    if (gone.length > 0) resort = true;

    // Claims: every release first, so a frontend moving between tables is no conflict.
    for (const r of reclaims) {
      for (const s of r.old) {
        if (this.#multi.has(s.frontend)) return undefined; // a conflict changes
        if (this.#first.get(s.frontend) === r.key) this.#first.delete(s.frontend);
      }
    }
    for (const r of reclaims) {
      for (const s of r.now) {
        const first = this.#first.get(s.frontend);
        if (first === undefined) this.#first.set(s.frontend, r.key);
        else if (first !== r.key) {
          if (!fresh) return undefined; // a new conflict
          const set = this.#multi.get(s.frontend) ?? new Set([first]);
          set.add(r.key);
          this.#multi.set(s.frontend, set);
        }
      }
    }

    // Conflicted frontends are the same as last time (else the pass gave up above): only the
    // changed tables' lists and errors can differ.
    const multi = this.#multi;
    const drop = (list: DesiredService[]) =>
      multi.size > 0 && list.some((s) => multi.has(s.frontend))
        ? list.filter((s) => !multi.has(s.frontend))
        : list;
    for (const m of dirty) {
      const parsed = m.parsed!;
      const errors = [...parsed.errors];
      let conflict = false;
      if (parsed.valid && multi.size > 0) {
        for (const s of parsed.wanted) {
          const claimants = multi.get(s.frontend);
          if (!claimants) continue;
          const others = [...claimants].filter((t) => t !== m.key).sort();
          errors.push(`frontend ${s.frontend} is also claimed by ${others.join(", ")}`);
          conflict = true;
        }
      }
      m.wanted = parsed.valid ? drop(parsed.wanted) : NONE;
      m.kept = drop(m.fallback);
      m.outcome = {
        ...m.outcome,
        generation: m.generation,
        result: !parsed.valid ? "invalid" : conflict ? "conflict" : "programmed",
        errors,
      };
    }

    if (resort) {
      this.#sorted = [...memo.values()].sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    }
    const sorted = this.#sorted;

    // Capacity, as computeDesiredState checks it; a table that does not fit is left to it.
    let usage: Usage = { services: 0, keys: 0, backends: 0 };
    for (const m of sorted) usage = add(usage, usageOf(m.kept));
    for (const m of sorted) {
      if (!m.parsed!.valid) {
        // Not programmed and never programmed by this process: the fallback reads the maps.
        if (!options.lastProgrammed.has(m.key)) return undefined;
        continue;
      }
      const without = add(usage, usageOf(m.kept), -1);
      if (!fits(add(without, peakUsage(m.kept, m.wanted)), options.capacity)) return undefined;
      usage = add(without, usageOf(m.wanted));
    }

    // The services map: the lists are disjoint (conflicted frontends are in none, and no table
    // falls back for capacity), so removing every old list before adding the new ones is exact.
    const services = this.#services;
    const changed = new Set<string>();
    // A service object in both the old and the new list of a table stays (see reuse): unchanged.
    const remove = (list: readonly DesiredService[], stays?: ReadonlySet<DesiredService>) => {
      for (const s of list) {
        if (services.get(s.frontend) !== s || stays?.has(s)) continue;
        services.delete(s.frontend);
        changed.add(s.frontend);
      }
    };
    for (const m of gone) {
      remove(m.final);
      this.#byTable.delete(m.key);
    }
    const moved: TableMemo[] = [];
    for (const m of dirty) {
      const final = m.parsed!.valid ? m.wanted : m.kept;
      if (final !== m.final) {
        if (m.final.length > 0) remove(m.final, new Set(final)); // none on a first sync
        m.final = final;
        moved.push(m);
      }
      m.outcome.entries = final.length; // a new object for each dirty table
      m.outcome.backends = usageOf(final).backends;
    }
    for (const m of moved) {
      for (const s of m.final) {
        if (services.get(s.frontend) === s) continue;
        services.set(s.frontend, s);
        changed.add(s.frontend);
      }
      this.#byTable.set(m.key, m.final);
    }
    for (const m of dirty) if (!this.#byTable.has(m.key)) this.#byTable.set(m.key, m.final);

    return {
      services,
      keep: new Set(),
      tables: sorted.map((m) => m.outcome),
      byTable: this.#byTable,
      ...(!fresh && this.#last ? { changes: { since: this.#last, frontends: changed } } : {}),
    };
  }
}
