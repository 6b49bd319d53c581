/**
 * The operator's level-based core: pure functions from a snapshot of the
 * cluster to the desired state, a work queue, and the map from watch events
 * to the Gateways they affect. The informers, leader election and the writer
 * (server-side apply) wrap these.
 *
 * @module
 */
export * from "./snapshot.ts";
export * from "./conditions.ts";
export * from "./gateway_class.ts";
export * from "./listeners.ts";
export * from "./route_attachment.ts";
export * from "./backends.ts";
export * from "./addresses.ts";
export * from "./gateway.ts";
export * from "./work_queue.ts";
export * from "./event_map.ts";
