/**
 * blixt's Kubernetes client layer, shared by the operator, the agent and the
 * plugin: client configuration and server-side apply, raw abortable
 * requests, informers and leader election. See README.md beside this file.
 *
 * This module only re-exports.
 *
 * @module
 */

export * from "./client.ts";
export * from "./rest.ts";
export * from "./resource.ts";
export * from "./informer.ts";
export * from "./leader_election.ts";
export * from "./backoff.ts";
export * from "./log.ts";
