/**
 * `deno task plugin:install [--dir DIR]`: puts an executable `kubectl-blixt`
 * on PATH (default /usr/local/bin), a small launcher that runs plugin/main.ts
 * from this checkout with the Deno that ran the install, so kubectl finds the
 * plugin as `kubectl blixt`. `deno compile` would make a single binary, but
 * it downloads a runtime, which machines without that access cannot do; the
 * launcher needs nothing but this checkout and Deno's module cache.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** The launcher's default directory. */
export const DEFAULT_DIR = "/usr/local/bin";

/**
 * What the plugin may do: read kubeconfigs and certificates, read the
 * environment, talk to the API server, run kubeconfig exec credential
 * plugins, and read system facts client-node asks for. No writes, no FFI.
 */
export const PERMISSIONS = [
  "--allow-read",
  "--allow-env",
  "--allow-net",
  "--allow-run",
  "--allow-sys",
] as const;

function quote(s: string): string {
  return `'${s.replaceAll("'", `'"'"'`)}'`;
}

/** The launcher script: `exec deno run <permissions> --config deno.json plugin/main.ts "$@"`. */
export function launcherScript(
  deno: string,
  options: { main: string; config: string; denoDir?: string | undefined },
): string {
  const env = options.denoDir ? `DENO_DIR=${quote(options.denoDir)} ` : "";
  return `#!/bin/sh
# kubectl-blixt: written by \`deno task plugin:install\`. It runs the plugin
# from its checkout with the Deno that installed it; install again after
# moving the checkout or upgrading Deno.
${env}exec ${quote(deno)} run --quiet --no-prompt ${PERMISSIONS.join(" ")} --config ${
    quote(options.config)
  } ${quote(options.main)} "$@"
`;
}

/** Writes the launcher as `DIR/kubectl-blixt` (mode 0755) and returns its path. */
export async function installLauncher(
  dir: string,
  options: { deno: string; denoDir?: string | undefined },
): Promise<string> {
  const path = `${dir.replace(/\/+$/, "")}/kubectl-blixt`;
  const script = launcherScript(options.deno, {
    main: new URL("./main.ts", import.meta.url).pathname,
    config: new URL("../deno.json", import.meta.url).pathname,
    denoDir: options.denoDir,
  });
  // write beside it and rename, so a running kubectl-blixt never reads half a file
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(tmp, script, { mode: 0o755 });
  await Deno.chmod(tmp, 0o755);
  await Deno.rename(tmp, path);
  return path;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { dir: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log(
      `Usage: deno task plugin:install [--dir DIR]\n\nWrites DIR/kubectl-blixt (default ${DEFAULT_DIR}).`,
    );
    Deno.exit(0);
  }
  const dir = values.dir ?? DEFAULT_DIR;
  try {
    const path = await installLauncher(dir, {
      deno: Deno.execPath(),
      denoDir: Deno.env.get("DENO_DIR"),
    });
    console.log(`installed ${path} (runs plugin/main.ts with ${Deno.execPath()})`);
    const onPath = (Deno.env.get("PATH") ?? "").split(":").some((p) =>
      p.replace(/\/+$/, "") === dir.replace(/\/+$/, "")
    );
    if (!onPath) console.log(`note: ${dir} is not on PATH; add it so kubectl finds the plugin`);
    console.log("try: kubectl blixt version");
  } catch (err) {
    console.error(
      `error: cannot write ${dir}/kubectl-blixt: ${err instanceof Error ? err.message : err}`,
    );
    console.error("choose a directory you can write with --dir, or run as a user who can");
    Deno.exit(1);
  }
}
