/**
 * The contract shared by operator, agent and kubectl-blixt: blixt.dev/v1alpha1
 * kinds, their validation, and the names they use.
 *
 * @module
 */
export * from "./meta.ts";
export * from "./ip_address.ts";
export * from "./routing_table.ts";
export * from "./dataplane_node.ts";
export * from "./gateway_class_config.ts";
export * from "./agent_lease.ts";
