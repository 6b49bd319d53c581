/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking: timeouts, TCP state, and the entries a new flow creates. */
#ifndef BLIXT_CONNTRACK_H
#define BLIXT_CONNTRACK_H

#include "maps.h"
#include "parse.h"

/*
 * Now on CLOCK_MONOTONIC_COARSE (the clock of created/last_seen), without a
 * helper call on most packets: the coarse clock moves once per tick, so it is
 * re-read only when jiffies (inlined by the verifier) moved. CPUs may differ
 * by a tick: compare times with ct_age(), never by unsigned subtraction.
 */
static __always_inline __u64 ct_now(void)
{
	__u32 zero = 0;
	struct clock_cache *c = bpf_map_lookup_elem(&clock, &zero);
	__u64 j = bpf_jiffies64();

	if (!c)
		return bpf_ktime_get_coarse_ns();
	if (c->jiffies != j) {
		c->jiffies = j;
		c->ns = bpf_ktime_get_coarse_ns();
	}
	return c->ns;
}

/* How long ago t was; another CPU's slightly newer timestamp counts as now. */
static __always_inline __u64 ct_age(__u64 now, __u64 t)
{
	__s64 d = now - t;

	return d > 0 ? d : 0;
}

static __always_inline __u64 ct_timeout(const struct flow_value *v, __u8 proto)
{
	if (proto == IPPROTO_TCP) {
		switch (v->state) {
		case CT_NEW:
			return TCP_TIMEOUT_SYN_SENT;
		case CT_SYN_RECV:
			return TCP_TIMEOUT_SYN_RECV;
		case CT_PICKUP:
			return TCP_TIMEOUT_PICKUP;
		case CT_ESTABLISHED:
			return TCP_TIMEOUT_ESTABLISHED;
		case CT_CLOSING:
			return TCP_TIMEOUT_CLOSING;
		default:
			return TCP_TIMEOUT_CLOSED;
		}
	}
	return v->state == CT_ESTABLISHED ? UDP_TIMEOUT_STREAM : UDP_TIMEOUT;
}

static __always_inline int ct_expired(const struct flow_value *v, __u8 proto, __u64 now)
{
	return ct_age(now, v->last_seen) > ct_timeout(v, proto);
}

/* Whether a flow has seen a FIN or a RST (a new SYN on its tuple starts over). */
static __always_inline int ct_closed_or_closing(__u8 state)
{
	return state == CT_CLOSING || state == CT_CLOSED;
}

/*
 * The state a TCP packet moves its flow to (either direction). A handshake is established
 * by the client's ACK after the backend's SYN-ACK, not by the SYN-ACK: a spoofed SYN's flow
 * stays half-open (short timeouts) however the backend answers. A flow picked up mid-stream
 * is established by any answer of the backend.
 */
static __always_inline __u8 ct_next_state(__u8 state, __u8 tcp_flags, int is_reply)
{
	if (tcp_flags & TCPF_RST)
		return CT_CLOSED;
	if (tcp_flags & TCPF_FIN)
		return state == CT_CLOSED ? CT_CLOSED : CT_CLOSING;
	if (is_reply) {
		if (state == CT_NEW && (tcp_flags & TCPF_SYN) && (tcp_flags & TCPF_ACK))
			return CT_SYN_RECV;
		if (state == CT_PICKUP)
			return CT_ESTABLISHED;
		return state;
	}
	if (state == CT_SYN_RECV && (tcp_flags & TCPF_ACK) && !(tcp_flags & TCPF_SYN))
		return CT_ESTABLISHED;
	return state;
}

/* Refresh an entry's last_seen and state, writing only when something changed. */
static __always_inline void ct_touch(struct flow_value *v, __u8 state, __u64 now)
{
	if (v->state != state)
		v->state = state;
	if (ct_age(now, v->last_seen) > CT_REFRESH_NS)
		v->last_seen = now;
}

/* The DNAT (primary) key of the flow a reply entry belongs to. */
static __always_inline void ct_primary_key(struct flow_key *k, const struct flow_value *reply,
					   __u8 proto, __u8 family)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->saddr = reply->daddr[0];
	k->daddr = reply->saddr[0];
	k->sport = reply->dport;
	k->dport = reply->sport;
	k->proto = proto;
	k->family = family;
	k->dir = DIR_INGRESS;
}

/*
 * Tell the primary entry about a reply: it establishes or closes the flow.
 * Returns -1 when the reply entry is stale (its flow is gone, or closed and
 * this is a new handshake on the same tuple, e.g. a client that reuses its
 * port to reach the backend directly): the caller drops the entry and leaves
 * the packet alone. Checked on handshakes and at most once per CT_REFRESH_NS.
 */
static __always_inline int ct_on_reply(struct flow_value *reply, const struct packet *p, __u64 now)
{
	struct flow_key pk;
	struct flow_value *primary;
	int syn = p->tcp_flags & TCPF_SYN;
	int refresh = ct_age(now, reply->last_seen) > CT_REFRESH_NS;
	__u8 state;

	if (!refresh && !syn && (reply->flags & CT_F_REPLIED) &&
	    !(p->tcp_flags & (TCPF_FIN | TCPF_RST)))
		return 0;
	ct_primary_key(&pk, reply, p->key.proto, p->key.family);
	primary = bpf_map_lookup_elem(&conntrack, &pk);
	if (!primary || primary->kind != CT_KIND_DNAT || primary->backend_id != reply->backend_id ||
	    ct_expired(primary, p->key.proto, now) ||
	    (syn && ct_closed_or_closing(primary->state)))
		return -1;
	if (refresh)
		reply->last_seen = now;
	if (p->key.proto == IPPROTO_TCP)
		state = ct_next_state(primary->state, p->tcp_flags, 1);
	else
		state = CT_ESTABLISHED;
	ct_touch(primary, state, now);
	reply->flags |= CT_F_REPLIED;
	return 0;
}

/* Whether an existing reply entry may be overwritten by a new flow's SNAT port. */
static __always_inline int ct_reply_stale(const struct flow_value *reply, __u8 proto, __u8 family,
					  __u64 now)
{
	struct flow_key pk;
	struct flow_value *primary;

	ct_primary_key(&pk, reply, proto, family);
	primary = bpf_map_lookup_elem(&conntrack, &pk);
	if (!primary)
		return 1;
	if (ct_expired(primary, proto, now))
		return 1;
	return primary->backend_id != reply->backend_id;
}

/* A fresh entry: rewrite matching packets to saddr:sport -> daddr:dport. */
static __always_inline void ct_value(struct flow_value *v, __u8 kind, __be32 saddr, __be16 sport,
				     __be32 daddr, __be16 dport, __u32 service_id,
				     __u32 backend_id, __u64 now)
{
	__builtin_memset(v, 0, sizeof(*v));
	v->saddr[0] = saddr;
	v->daddr[0] = daddr;
	v->sport = sport;
	v->dport = dport;
	v->kind = kind;
	v->service_id = service_id;
	v->backend_id = backend_id;
	v->created = now;
	v->last_seen = now;
}

/* A flow key from explicit fields. */
static __always_inline void ct_key(struct flow_key *k, __be32 saddr, __be16 sport, __be32 daddr,
				   __be16 dport, __u8 proto, __u8 dir)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->saddr = saddr;
	k->daddr = daddr;
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->family = FAMILY_V4;
	k->dir = dir;
}

/*
 * Reserve a source port on this node for a flow to a remote backend: the
 * reply entry (backend -> node:port) is inserted with BPF_NOEXIST, so two
 * flows never share a port towards the same backend.
 */
static __always_inline int ct_reserve_snat(const struct config *cfg, const struct packet *p,
					   const struct backend *be, struct flow_value *reply,
					   __u32 hash, __u64 now, __be16 *port_out)
{
	__u32 min = cfg->snat_port_min, max = cfg->snat_port_max;
	__u32 range;
	struct flow_key rk;

	if (min == 0 || max < min)
		return -1;
	range = max - min + 1;
	for (__u32 i = 0; i < SNAT_TRIES; i++) {
		__be16 port = bpf_htons(min + (hash + i) % range);
		struct flow_value *old;

		ct_key(&rk, be->addr[0], be->port, cfg->node_addr[0], port, p->key.proto, DIR_INGRESS);
		if (bpf_map_update_elem(&conntrack, &rk, reply, BPF_NOEXIST) == 0) {
			*port_out = port;
			return 0;
		}
		old = bpf_map_lookup_elem(&conntrack, &rk);
		if (old && (ct_reply_stale(old, p->key.proto, p->key.family, now) ||
			    (old->daddr[0] == reply->daddr[0] && old->dport == reply->dport &&
			     old->saddr[0] == reply->saddr[0] && old->sport == reply->sport))) {
			if (bpf_map_update_elem(&conntrack, &rk, reply, BPF_ANY) == 0) {
				*port_out = port;
				return 0;
			}
		}
	}
	return -1;
}

#endif
