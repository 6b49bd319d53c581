import assert from "node:assert/strict";
import { installLauncher, launcherScript } from "./install.ts";

Deno.test("install writes an executable launcher that runs the plugin with the pinned Deno", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await installLauncher(dir, { deno: Deno.execPath() });
    assert.equal(path, `${dir}/kubectl-blixt`);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o755);
    const script = await Deno.readTextFile(path);
    assert.ok(script.startsWith("#!/bin/sh\n"));
    assert.ok(script.includes(`'${Deno.execPath()}' run`));
    assert.match(script, /'\/[^']*\/plugin\/main\.ts' "\$@"\n$/);
    assert.ok(!script.includes("--allow-write") && !script.includes("-A "));

    // kubectl runs it by name from PATH, from any directory
    const out = await new Deno.Command("kubectl-blixt", {
      args: ["version", "--client"],
      cwd: "/",
      env: { PATH: `${dir}:${Deno.env.get("PATH")}` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(stdout, /^Client Version: v\d+\.\d+\.\d+\nDeno Version: /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launcher paths are quoted for the shell, DENO_DIR kept when the install had one", () => {
  const script = launcherScript("/opt/it's/deno", {
    main: "/src/plugin/main.ts",
    config: "/src/deno.json",
    denoDir: "/var/cache/deno",
  });
  assert.ok(script.includes(`exec '/opt/it'"'"'s/deno' run`));
  assert.ok(script.includes("DENO_DIR='/var/cache/deno' exec"));
});
