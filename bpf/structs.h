/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Map keys and values. Layouts are mirrored in agent/bpf/layout.ts and checked against BTF. */
#ifndef BLIXT_STRUCTS_H
#define BLIXT_STRUCTS_H

#include <linux/types.h>

/* Addresses are 16 bytes so IPv6 fits; IPv4 uses word 0 and leaves 1..3 zero. */

/* What a client addresses: the key of the services map. */
struct service_key {
	__be32 addr[4];
	__be16 port;	/* 0 with proto 0: the VIP marker entry */
	__u8 proto;	/* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;	/* FAMILY_V4 / FAMILY_V6 */
};

/* A service: its id (index of its Maglev table and counters) and behaviour. */
struct service_value {
	__u32 id;
	__u32 flags;		/* SVC_F_* */
	__u32 table_size;	/* Maglev slots in use; 0 = no backends, reject everything */
	__u32 fingerprint;	/* agent bookkeeping: hash of the Maglev input; unused here */
};

/* A backend a flow can be sent to: the value of the backends array, keyed by backend id. */
struct backend {
	__be32 addr[4];
	__be16 port;
	__u8 family;
	__u8 flags;	/* BE_F_* */
	__u32 service_id;	/* agent bookkeeping: the service owning this id; unused here */
};

/* Node-wide settings written by the agent: the single entry of the config map. */
struct config {
	__be32 node_addr[4];	/* source address for remote backends */
	__u16 snat_port_min;	/* host order, inclusive */
	__u16 snat_port_max;
	__u32 flags;
};

/* A packet's 5-tuple as one hook sees it: the conntrack key. */
struct flow_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 dir;	/* DIR_INGRESS / DIR_EGRESS */
	__u8 reserved;
};

/* A tracked flow entry: the tuple to rewrite matching packets to, and its state. */
struct flow_value {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 kind;	/* CT_KIND_* */
	__u8 state;	/* CT_* (kept on the DNAT entry) */
	__u8 flags;	/* CT_F_* */
	__u8 reserved;
	__u32 service_id;
	__u32 backend_id;
	__u64 created;		/* bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC_COARSE) */
	__u64 last_seen;	/* same clock, refreshed at most every CT_REFRESH_NS */
};

/* Per-CPU traffic counters of one service or one backend. */
struct counters {
	__u64 packets;		/* client -> service packets */
	__u64 bytes;
	__u64 reply_packets;	/* backend -> client packets */
	__u64 reply_bytes;
	__u64 new_flows;
	__u64 rejected;		/* packets answered with RST / ICMP unreachable */
};

#endif
