/**
 * blixt: a layer-4 Gateway API load balancer for Kubernetes.
 *
 * This module only re-exports the public pieces of the project.
 *
 * @module
 */
export {};
