// Small checks shared by the validators of api/: each records a FieldError and
// returns whether the value passed, so a validator reports every problem at once.
import type { FieldError } from "./meta.ts";
import { parseIp } from "./ip_address.ts";

/** A plain JSON object. */
export type JsonObject = Record<string, unknown>;

/** Collects the field errors of one validation run. */
export class FieldErrors {
  readonly list: FieldError[] = [];
  add(path: string, message: string): false {
    this.list.push({ path, message });
    return false;
  }
  object(value: unknown, path: string): value is JsonObject {
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      return true;
    }
    return this.add(path, "must be an object");
  }
  array(value: unknown, path: string): value is unknown[] {
    return Array.isArray(value) || this.add(path, "must be a list");
  }
  string(value: unknown, path: string, opts: { minLength?: number } = {}) {
    if (typeof value !== "string") return this.add(path, "must be a string");
    if (value.length < (opts.minLength ?? 0)) {
      return this.add(path, `must have at least ${opts.minLength} characters`);
    }
    return true;
  }
  integer(value: unknown, path: string, min: number, max: number): boolean {
    if (typeof value !== "number" || !Number.isInteger(value)) {
      return this.add(path, "must be an integer");
    }
    if (value < min || value > max) {
      return this.add(path, `must be between ${min} and ${max}, got ${value}`);
    }
    return true;
  }
  boolean(value: unknown, path: string): boolean {
    return typeof value === "boolean" ||
      this.add(path, "must be true or false");
  }
  oneOf(value: unknown, path: string, allowed: readonly string[]): boolean {
    if (typeof value === "string" && allowed.includes(value)) return true;
    return this.add(
      path,
      `must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`,
    );
  }
  ip(value: unknown, path: string): boolean {
    if (typeof value === "string" && parseIp(value) !== null) return true;
    return this.add(
      path,
      `must be an IPv4 or IPv6 address, got ${JSON.stringify(value)}`,
    );
  }
}
