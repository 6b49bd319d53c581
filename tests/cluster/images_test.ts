import assert from "node:assert/strict";
import { ImageNotFoundError, parseImage, resolveImage } from "./images.ts";

Deno.test("images: the suite's echo-basic tags and coredns resolve to our binaries", () => {
  for (const tag of ["v1.5.1", "v1.6.0-dev.2", "v1.6.0-dev.3"]) {
    assert.equal(
      resolveImage(`registry.k8s.io/gateway-api/echo-basic:${tag}`).binary,
      "echo-basic",
    );
  }
  assert.equal(resolveImage("registry.k8s.io/coredns/coredns:v1.12.2").binary, "coredns");
  assert.deepEqual(parseImage("localhost:5000/a/b"), {
    repository: "localhost:5000/a/b",
    tag: "latest",
  });
});

Deno.test("images: an unknown image or tag is an ImageNotFoundError that says why", () => {
  assert.throws(
    () => resolveImage("docker.io/library/nginx:1.27"),
    (e: unknown) => e instanceof ImageNotFoundError && /is not known/.test(e.message),
  );
  assert.throws(
    () => resolveImage("registry.k8s.io/coredns/coredns:v1.11.1"),
    (e: unknown) => e instanceof ImageNotFoundError && /no build for tag "v1.11.1"/.test(e.message),
  );
});
