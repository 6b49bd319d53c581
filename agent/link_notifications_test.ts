/**
 * Link notifications from the real kernel, in a network namespace of the
 * test's own: a bridge made, changed and deleted there is reported
 * (name and ifindex), and nothing of the test's own namespace is.
 */
import assert from "node:assert/strict";
import { type LinkEvent, watchLinkNotifications } from "./link_notifications.ts";

async function ip(...args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function until<T>(what: string, fn: () => T | undefined, ms = 5_000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function withNamespace(fn: (ns: string) => Promise<void>): Promise<void> {
  const ns = `bxln-${Deno.pid}-${crypto.randomUUID().slice(0, 6)}`;
  await ip("netns", "add", ns);
  try {
    await fn(ns);
  } finally {
    await ip("netns", "del", ns);
  }
}

Deno.test("a link made, changed and deleted in the namespace is reported at once, by name and ifindex", async () => {
  await withNamespace(async (ns) => {
    const events: (LinkEvent & { at: number })[] = [];
    const links = watchLinkNotifications((e) => events.push({ ...e, at: Date.now() }), {
      netns: `/run/netns/${ns}`,
    });
    try {
      const made = Date.now();
      await ip("-n", ns, "link", "add", "bxln0", "type", "bridge");
      const created = await until("RTM_NEWLINK", () => events.find((e) => e.kind === "new"));
      assert.ok(created.kind === "new" && created.name === "bxln0", JSON.stringify(created));
      console.log(`made: reported ${created.at - made} ms after the ip command started`);

      await ip("-n", ns, "link", "set", "bxln0", "up");
      await until("the change", () => events.filter((e) => e.kind === "new").length >= 2);

      await ip("-n", ns, "link", "del", "bxln0");
      const deleted = await until("RTM_DELLINK", () => events.find((e) => e.kind === "deleted"));
      assert.deepEqual(
        { kind: deleted.kind, name: "name" in deleted ? deleted.name : undefined },
        { kind: "deleted", name: "bxln0" },
      );
      assert.ok(events.every((e) => e.kind === "lost" || e.ifindex === created.ifindex));
    } finally {
      await links.stop();
    }
  });
});

Deno.test("links of another namespace are not reported; stop ends the subscription", async () => {
  await withNamespace(async (ns) => {
    await withNamespace(async (other) => {
      const events: LinkEvent[] = [];
      const links = watchLinkNotifications((e) => events.push(e), { netns: `/run/netns/${ns}` });
      try {
        await ip("-n", other, "link", "add", "bxln1", "type", "bridge");
        await ip("-n", ns, "link", "add", "bxln2", "type", "bridge");
        await until("bxln2", () => events.find((e) => "name" in e && e.name === "bxln2"));
        assert.ok(!events.some((e) => "name" in e && e.name === "bxln1"), JSON.stringify(events));
      } finally {
        await links.stop();
      }
      await links.stop(); // twice is fine
      const before = events.length;
      await ip("-n", ns, "link", "del", "bxln2");
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(events.length, before, "nothing after stop");
    });
  });
});
