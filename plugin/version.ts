/**
 * `kubectl blixt version`: the plugin's version (the workspace's, from
 * deno.json), the Deno running it, and the API server's version.
 *
 * @module
 */
import workspace from "../deno.json" with { type: "json" };

/** The plugin's version, `v` and the workspace version. */
export const PLUGIN_VERSION = `v${workspace.version}`;

/** Version of the version schema. */
export const VERSION_SCHEMA = "v1";

/** The `-o json|yaml` output of `kubectl blixt version`. */
export interface VersionReport {
  /** `BlixtVersion`. */
  kind: "BlixtVersion";
  /** Schema version, `v1`. */
  version: typeof VERSION_SCHEMA;
  /** This plugin. */
  client: { version: string; deno: string };
  /** The cluster; null with `--client`. */
  server: { kubernetes: string } | null;
}

/** Builds the version report. */
export function buildVersion(server: string | undefined): VersionReport {
  return {
    kind: "BlixtVersion",
    version: VERSION_SCHEMA,
    client: { version: PLUGIN_VERSION, deno: Deno.version.deno },
    server: server === undefined ? null : { kubernetes: server },
  };
}

/** The text form, one `Name: value` line each, as `kubectl version` prints. */
export function versionText(report: VersionReport): string {
  let text = `Client Version: ${report.client.version}\nDeno Version: ${report.client.deno}\n`;
  if (report.server !== null) text += `Server Version: ${report.server.kubernetes}\n`;
  return text;
}
