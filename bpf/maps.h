/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The BPF maps; the agent pins them all under one bpffs directory. */
#ifndef BLIXT_MAPS_H
#define BLIXT_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICE_KEYS);
	__type(key, struct service_key);
	__type(value, struct service_value);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

/* One Maglev table per service id; the agent swaps in a whole new table on each change.
 * BPF_F_INNER_MAP lets inner tables differ in size (service_value.table_size slots);
 * BPF_F_MMAPABLE lets the agent fill a fresh table through mmap before it is swapped in. */
struct maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
	__uint(max_entries, MAGLEV_MAX);
	__type(key, __u32);
	__type(value, __u32);	/* backend id, BACKEND_REJECT for the rejected share */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__array(values, struct maglev_table);
} maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_MAX);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct counters);
} service_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct counters);
} backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EVENT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} events SEC(".maps");

/* Interfaces facing this node's pods (key: ifindex): their clients' flows are source-translated. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_POD_IFACES);
	__type(key, __u32);
	__type(value, __u32);	/* IFACE_F_* */
} pod_ifaces SEC(".maps");

/*
 * In front of pod_ifaces, for the packets of every other interface (each packet to no VIP at an
 * ingress asks whether it came from the pods): slot ifindex % POD_IFACE_SLOTS says whether any
 * listed interface has it (POD_SLOT_*). An array lookup is inlined by the verifier; the hash
 * lookup it spares cost ~21 ns a packet. Derived from pod_ifaces by the agent on every load and
 * change, and not pinned: each loaded program starts from POD_SLOT_UNKNOWN (ask pod_ifaces), so an
 * upgrade or a downgrade never leaves it describing another program's list.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POD_IFACE_SLOTS);
	__type(key, __u32);
	__type(value, __u32);	/* POD_SLOT_* */
} pod_iface_slots SEC(".maps");

/* Read once per jiffy per CPU: the coarse clock only moves on a tick, and its helper costs ~18 ns. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct clock_cache);
} clock SEC(".maps");

/* Per CPU: the second (CLOCK_MONOTONIC_COARSE) << 32 | SNAT-exhaustion rejects sent in it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} reject_budget SEC(".maps");

/*
 * IPv4 client addresses whose TCP handshake a backend accepted lately (value: when, on the
 * coarse clock). Under SNAT exhaustion their SYNs take half-open ports sooner than unknown ones.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VERIFIED_MAX);
	__type(key, __be32);
	__type(value, __u64);
} verified_clients SEC(".maps");

#endif
