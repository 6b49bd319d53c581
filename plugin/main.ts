/**
 * kubectl-blixt: the kubectl plugin of blixt. kubectl runs it as
 * `kubectl blixt ...`; `deno task plugin:install` puts a launcher for this
 * file on PATH. See README.md beside it.
 *
 * @module
 */
import { EXIT, NOW_ENV, run } from "./cli.ts";

const encoder = new TextEncoder();

function writer(file: typeof Deno.stdout): (text: string) => void {
  return (text) => {
    try {
      const bytes = encoder.encode(text);
      let done = 0;
      while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
    } catch (err) {
      // `kubectl blixt status | head`: the reader left, which is not an error
      if (err instanceof Deno.errors.BrokenPipe) Deno.exit(EXIT.ok);
      throw err;
    }
  };
}

function clock(): Date {
  const fixed = Deno.env.get(NOW_ENV);
  if (fixed === undefined || fixed === "") return new Date();
  const t = Date.parse(fixed);
  if (Number.isNaN(t)) {
    console.error(`error: ${NOW_ENV}=${fixed} is not an RFC 3339 time`);
    Deno.exit(EXIT.usage);
  }
  return new Date(t);
}

if (import.meta.main) {
  let code: number;
  try {
    code = await run(Deno.args, {
      stdout: writer(Deno.stdout),
      stderr: writer(Deno.stderr),
      isTerminal: Deno.stdout.isTerminal(),
      env: Deno.env,
      now: clock(),
    });
  } catch (err) {
    // a bug, not a user error: say so with the stack
    console.error("error: kubectl-blixt failed unexpectedly:", err);
    code = EXIT.error;
  }
  Deno.exit(code);
}
