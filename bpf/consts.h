/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Constants shared by the blixt TC program's headers. Mirrored in agent/bpf/layout.ts. */
#ifndef BLIXT_CONSTS_H
#define BLIXT_CONSTS_H

#include <linux/types.h>

/* Map capacities. The loader may lower CT_MAX before load (pinned maps must match).
 * Sized for 10,000 services of 10 backends each (a backend id belongs to one service). */
#define MAX_SERVICES 16384
#define MAX_SERVICE_KEYS 32768 /* services plus one VIP marker per address */
#define MAX_BACKENDS 131072
#define MAGLEV_MAX 65537 /* the largest Maglev table, a prime; inner tables are 1021..65537 slots */
#define CT_MAX 262144
#define MAX_POD_IFACES 256
#define POD_IFACE_SLOTS 1024 /* pod_iface_slots: one per ifindex % 1024 */
#define VERIFIED_MAX 65536 /* client addresses that finished a handshake (verified_clients) */

/* Address families in keys (the kernel's AF_* values). */
#define FAMILY_V4 2
#define FAMILY_V6 10

/* Backend id 0 is never a backend: in a Maglev table it means "reject this share". */
#define BACKEND_REJECT 0

/* service_value.flags */
#define SVC_F_VIP_MARKER (1 << 0)  /* port 0 / proto 0 entry: this address is a VIP */
#define SVC_F_KEEP_CLIENT (1 << 1) /* never SNAT, even for remote backends (local-only Gateways) */

/* backend.flags */
#define BE_F_ACTIVE (1 << 0) /* the slot holds a backend */
#define BE_F_REMOTE (1 << 1) /* on another node: reached with the source translated to this node */

/* pod_ifaces values */
#define IFACE_F_PODS (1 << 0) /* clients here are this node's pods: hairpin, always SNAT */

/* pod_iface_slots values: whether an ifindex of the slot may be listed in pod_ifaces. */
#define POD_SLOT_UNKNOWN 0 /* not written yet (a freshly loaded program): ask pod_ifaces */
#define POD_SLOT_NONE 1	   /* no listed interface has this slot: not a pod interface */
#define POD_SLOT_ASK 2	   /* a listed interface has this slot: ask pod_ifaces */

/* flow_key.dir: the hook that sees the tuple. */
#define DIR_INGRESS 0
#define DIR_EGRESS 1

/* flow_value.kind: what the entry does to a packet. */
#define CT_KIND_DNAT 1  /* client -> VIP at ingress: to the backend (the flow's primary entry) */
#define CT_KIND_SNAT 2  /* client -> remote backend at egress: source becomes node:port */
#define CT_KIND_REPLY 3 /* backend -> client or node:port: back to VIP -> client */

/*
 * flow_value.state: a small subset of the kernel's conntrack states. Values are kept across
 * versions (entries outlive a program upgrade): new states take new numbers, never reuse one.
 */
#define CT_NEW 0         /* TCP SYN seen (SYN_SENT) / UDP unreplied */
#define CT_ESTABLISHED 1 /* TCP: handshake done, or a picked-up flow the backend answered; UDP: replied */
#define CT_CLOSING 2     /* a FIN was seen */
#define CT_CLOSED 3      /* a RST was seen */
#define CT_SYN_RECV 4    /* TCP: the backend's SYN-ACK seen, the client's ACK not yet */
#define CT_PICKUP 5      /* TCP met mid-stream (a bare ACK, no entry): the backend has not answered */

/* flow_value.flags */
#define CT_F_REPLIED (1 << 0)   /* reply entry: the primary already knows a reply was seen */
#define CT_F_FIN_CLIENT (1 << 1) /* DNAT entry: the client sent a FIN */
#define CT_F_FIN_BACKEND (1 << 2) /* DNAT entry: the backend sent a FIN */
#define CT_F_FIN_BOTH (CT_F_FIN_CLIENT | CT_F_FIN_BACKEND)
#define CT_F_JUDGED (1 << 3)    /* reply entry: the handshake was judged (ct_on_reply, verified_clients) */
#define CT_F_PAST_STACK (1 << 4) /* a local backend's DNAT and REPLY entries: both ways skip the stack */

/*
 * Timeouts in nanoseconds: the kernel's nf_conntrack defaults, except the half-open ones. A
 * client's SYN retransmits are at most 32 s apart (tcp_syn_retries 6) and each one refreshes the
 * entry, so 60 s (nf_conntrack: 120 s) loses no real handshake and halves what a spoofed SYN holds.
 */
#define NS_PER_SEC 1000000000ULL
#define TCP_TIMEOUT_SYN_SENT (60 * NS_PER_SEC)
#define TCP_TIMEOUT_SYN_RECV (60 * NS_PER_SEC) /* nf_conntrack's syn_recv */
#define TCP_TIMEOUT_PICKUP (60 * NS_PER_SEC)   /* until the backend answers a picked-up flow */
#define TCP_TIMEOUT_ESTABLISHED (432000 * NS_PER_SEC)
#define TCP_TIMEOUT_CLOSING (120 * NS_PER_SEC) /* fin_wait / time_wait */
#define TCP_TIMEOUT_CLOSED (10 * NS_PER_SEC)
#define UDP_TIMEOUT (30 * NS_PER_SEC)
#define UDP_TIMEOUT_STREAM (120 * NS_PER_SEC)
/* last_seen is refreshed at most this often, to keep writes off the fast path. */
#define CT_REFRESH_NS NS_PER_SEC

/* SNAT source-port search: at most this many candidates per new remote flow, from a random one. */
#define SNAT_TRIES 32
/*
 * SNAT exhaustion is answered with at most this many RSTs / ICMP errors per CPU per second;
 * beyond it the packet is dropped (a real client retransmits its SYN; a spoofed flood gets
 * no backscatter towards the addresses it forged).
 */
#define SNAT_REJECTS_PER_SEC 64
/*
 * With every candidate port held by a live flow, a new TCP flow takes the port of a half-open one
 * (no ACK of its client after the backend's SYN-ACK: a SYN flood's) once it is this old since its
 * first packet; a client address that finished a handshake lately (verified_clients) sooner: a
 * handshake the backend never answered after Linux's initial SYN retransmission time (1 s), one
 * it answered after 3 s (the backend retransmitted its SYN-ACK at 1 s; a client with a round trip
 * below 3 s has ACKed).
 */
#define SNAT_HALF_OPEN_NS (5 * NS_PER_SEC)
#define SNAT_HALF_OPEN_VERIFIED_NS (1 * NS_PER_SEC)
#define SNAT_HALF_OPEN_ANSWERED_NS (3 * NS_PER_SEC)
/* verified_clients: how long a finished handshake vouches for its address, and write interval. */
#define VERIFIED_TIMEOUT_NS (600 * NS_PER_SEC)
#define VERIFIED_REFRESH_NS (60 * NS_PER_SEC)

/* Seed of the flow hash; the agent's flowHash() uses the same. */
#define FLOW_HASH_SEED 0x626c7874 /* "blxt" */

/* Indexes of the per-CPU event counters. */
enum dp_event {
	EV_FRAG_DROPPED = 0,	/* fragment to a VIP address: dropped */
	EV_MALFORMED_DROPPED,	/* truncated L4 header to a VIP address: dropped */
	EV_REJECT_TCP,		/* RST sent for a service with no usable backend */
	EV_REJECT_UDP,		/* ICMP port unreachable sent */
	EV_REJECT_FAILED,	/* could not build the reject packet: dropped */
	EV_ICMP_TRANSLATED,	/* ICMP error from a backend translated to the client */
	EV_SNAT_EXHAUSTED,	/* no free SNAT port: rejected (RST, ICMP unreachable) */
	EV_BACKEND_GONE,	/* tracked flow's backend was removed: picked again */
	EV_CT_CREATE_FAILED,	/* conntrack insert failed: dropped */
	EV_SNAT_HALF_OPEN_TAKEN, /* a new flow took the SNAT port of a half-open flow (SYN flood) */
	EV_SNAT_WAIT_DROPPED,	/* SYN dropped: half-open flows hold the ports (also EV_SNAT_EXHAUSTED) */
	EV_FORWARD_VIA_STACK,	/* a packet of a flow that could skip the stack but could not (forward.h) */
	EV_MAX,
};

/*
 * Slots of the events map: more than EV_MAX, so that a new event does not change the pinned
 * map's definition (the agent replaces an events map pinned with another size; counters restart).
 */
#define EVENT_SLOTS 32
_Static_assert(EV_MAX <= EVENT_SLOTS, "EVENT_SLOTS too small");

#endif
