/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking: timeouts, TCP state, and the entries a new flow creates. */
#ifndef BLIXT_CONNTRACK_H
#define BLIXT_CONNTRACK_H

#include "maps.h"
#include "parse.h"
#include "counters.h"

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

/* The CT_F_FIN_* bit a TCP packet sets on its flow's DNAT entry (0 without FIN). */
static __always_inline __u8 ct_fin_flag(__u8 tcp_flags, int is_reply)
{
	if (!(tcp_flags & TCPF_FIN))
		return 0;
	return is_reply ? CT_F_FIN_BACKEND : CT_F_FIN_CLIENT;
}

/* Refresh an entry's last_seen, state and flags, writing only when something changed. */
static __always_inline void ct_touch(struct flow_value *v, __u8 state, __u8 flags, __u64 now)
{
	if (v->state != state)
		v->state = state;
	if ((v->flags & flags) != flags)
		v->flags |= flags;
	if (ct_age(now, v->last_seen) > CT_REFRESH_NS)
		v->last_seen = now;
}

/* Whether a TCP flow is half-open: no ACK of the client after the backend's SYN-ACK yet. */
static __always_inline int ct_half_open(__u8 state)
{
	return state == CT_NEW || state == CT_SYN_RECV || state == CT_PICKUP;
}

/* Record that a client finished a TCP handshake its backend accepted (at most once a minute). */
static __always_inline void ct_verify_client(__be32 addr, __u64 now)
{
	__u64 *t = bpf_map_lookup_elem(&verified_clients, &addr);

	if (!t) {
		bpf_map_update_elem(&verified_clients, &addr, &now, BPF_ANY);
		return;
	}
	if (ct_age(now, *t) > VERIFIED_REFRESH_NS)
		*t = now;
}

/* Whether a client address finished a handshake here lately (a SYN of a real host, not forged). */
static __always_inline int ct_client_verified(__be32 addr, __u64 now)
{
	__u64 *t = bpf_map_lookup_elem(&verified_clients, &addr);

	return t && ct_age(now, *t) <= VERIFIED_TIMEOUT_NS;
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
	    ((reply->flags & CT_F_JUDGED) || p->key.proto != IPPROTO_TCP) &&
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
	if (p->key.proto == IPPROTO_TCP) {
		/*
		 * The backend answers after the client's ACK, so it accepted the handshake: the
		 * client is a real host (a forged source cannot know the backend's sequence). Judged
		 * once, when the handshake is over either way: later replies skip the lookup above.
		 */
		if (!(reply->flags & CT_F_JUDGED) && !ct_half_open(primary->state)) {
			if (primary->state == CT_ESTABLISHED && !(p->tcp_flags & (TCPF_SYN | TCPF_RST)))
				ct_verify_client(reply->daddr[0], now);
			reply->flags |= CT_F_JUDGED;
		}
		state = ct_next_state(primary->state, p->tcp_flags, 1);
	} else {
		state = CT_ESTABLISHED;
	}
	ct_touch(primary, state, ct_fin_flag(p->tcp_flags, 1), now);
	reply->flags |= CT_F_REPLIED;
	return 0;
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

/* What ct_snat_port_free() found: the port is free, and which old entries to delete. */
#define SNAT_FREE (1 << 0)
#define SNAT_DEL_DNAT (1 << 1)
#define SNAT_DEL_SNAT (1 << 2)
#define SNAT_TIME_WAIT (1 << 3) /* closed with FINs: the backend may hold TIME_WAIT */
#define SNAT_HALF_OPEN (1 << 4) /* a TCP handshake the client never finished: taken when old */

/*
 * How old (since its first packet) a half-open flow must be before a new flow of the client at
 * saddr takes its SNAT port; *verified caches ct_client_verified() (-1: not looked up yet).
 */
static __always_inline __u64 ct_half_open_min_age(__u8 state, __be32 saddr, __u64 now,
						  int *verified)
{
	if (*verified < 0)
		*verified = ct_client_verified(saddr, now);
	if (!*verified)
		return SNAT_HALF_OPEN_NS;
	return state == CT_NEW ? SNAT_HALF_OPEN_VERIFIED_NS : SNAT_HALF_OPEN_ANSWERED_NS;
}

/*
 * Whether a new flow may take the SNAT port of an existing reply entry
 * (backend -> node:port), because the flow behind it is over:
 * - no live DNAT entry of the same backend behind it (gone, expired, replaced);
 * - the flow's SNAT entry uses another port now (the client reopened its tuple);
 * - TCP closed by a reset;
 * - TCP closed with FINs both ways, and the new packet is a SYN: the
 *   backend's TIME_WAIT socket accepts a new SYN (docs/dataplane.md).
 * A TCP flow still half-open is not free but SNAT_HALF_OPEN, with *spare set
 * to its age past the age at which it may be taken (ct_half_open_min_age;
 * negative: not yet): the caller takes the one with the most when nothing is
 * free (a SYN flood's flows). Also says which of the old flow's
 * entries to delete (keys in *dnat and *snat), so that no late packet of the
 * old flow leaves from the port the new flow now uses, nor is sent to the
 * backend untranslated.
 */
static __always_inline int ct_snat_port_free(const struct flow_value *reply, __be16 port,
					     const struct packet *p, const struct backend *be,
					     __u64 now, struct flow_key *dnat, struct flow_key *snat,
					     int *verified, __s64 *spare)
{
	const struct flow_value *primary, *out;
	__u8 proto = p->key.proto;
	int owns;

	ct_key(snat, reply->daddr[0], reply->dport, be->addr[0], be->port, proto, DIR_EGRESS);
	out = bpf_map_lookup_elem(&conntrack, snat);
	owns = out && out->kind == CT_KIND_SNAT && out->sport == port;
	ct_primary_key(dnat, reply, proto, p->key.family);
	primary = bpf_map_lookup_elem(&conntrack, dnat);
	if (!primary || primary->kind != CT_KIND_DNAT || primary->backend_id != reply->backend_id ||
	    ct_expired(primary, proto, now))
		return SNAT_FREE | (owns ? SNAT_DEL_SNAT : 0);
	if (!owns)
		return SNAT_FREE;
	if (proto != IPPROTO_TCP)
		return 0;
	if (primary->state == CT_CLOSED)
		return SNAT_FREE | SNAT_DEL_DNAT | SNAT_DEL_SNAT;
	if (primary->state == CT_CLOSING && (primary->flags & CT_F_FIN_BOTH) == CT_F_FIN_BOTH &&
	    (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN)
		return SNAT_FREE | SNAT_DEL_DNAT | SNAT_DEL_SNAT | SNAT_TIME_WAIT;
	if (ct_half_open(primary->state)) {
		*spare = (__s64)ct_age(now, primary->created) -
			 (__s64)ct_half_open_min_age(primary->state, p->key.saddr, now, verified);
		return SNAT_HALF_OPEN | SNAT_DEL_DNAT | SNAT_DEL_SNAT;
	}
	return 0;
}

/* Give port rk (found free by ct_snat_port_free) to a new flow; 0 when it got it. */
static __always_inline int ct_take_snat_port(struct flow_key *rk, struct flow_value *reply,
					     int found, struct flow_key *dnat, struct flow_key *snat)
{
	if (found & SNAT_DEL_DNAT)
		bpf_map_delete_elem(&conntrack, dnat);
	if (found & SNAT_DEL_SNAT)
		bpf_map_delete_elem(&conntrack, snat);
	/*
	 * Delete, then insert with BPF_NOEXIST: of two CPUs taking over the same
	 * port at once, one gets it and the other tries the next port.
	 */
	bpf_map_delete_elem(&conntrack, rk);
	return bpf_map_update_elem(&conntrack, rk, reply, BPF_NOEXIST);
}

/* ct_reserve_snat(): no port now, but half-open flows hold some; a retransmitted SYN may get one. */
#define SNAT_WAIT (-2)

/*
 * Reserve a source port on this node for a flow to a remote backend: the
 * reply entry (backend -> node:port) is inserted with BPF_NOEXIST, so two
 * live flows never share a port towards the same backend. The search starts
 * at a random port, so consecutive flows do not probe the same ports, and a
 * port whose flow is over (ct_snat_port_free) is taken over at once. When none
 * of the candidates is unused, expired or reset: one closed with FINs, as the
 * backend may still hold its TIME_WAIT socket; else the half-open one (a SYN
 * flood's) most past ct_half_open_min_age(). Returns 0 with a port, SNAT_WAIT
 * when half-open flows hold the candidates but none is old enough yet, -1 when
 * finished handshakes hold them all (docs/dataplane.md).
 */
static __always_inline int ct_reserve_snat(const struct config *cfg, const struct packet *p,
					   const struct backend *be, struct flow_value *reply,
					   __u64 now, __be16 *port_out)
{
	__u32 min = cfg->snat_port_min, max = cfg->snat_port_max;
	__u32 range, start;
	__be16 time_wait = 0; /* the first port closed with FINs: taken when nothing better is */
	__be16 half_open = 0; /* the half-open port most past its age: taken when none is free */
	__s64 half_open_spare = 0, spare = 0;
	int verified = -1;
	struct flow_key rk, dnat, snat;
	struct flow_value *old;
	__be16 port;
	int found;

	if (min == 0 || max < min)
		return -1;
	range = max - min + 1;
	start = bpf_get_prandom_u32();
	for (__u32 i = 0; i < SNAT_TRIES && i < range; i++) {
		port = bpf_htons(min + (start + i) % range);
		ct_key(&rk, be->addr[0], be->port, cfg->node_addr[0], port, p->key.proto, DIR_INGRESS);
		if (bpf_map_update_elem(&conntrack, &rk, reply, BPF_NOEXIST) == 0) {
			*port_out = port;
			return 0;
		}
		old = bpf_map_lookup_elem(&conntrack, &rk);
		if (!old)
			continue;
		found = ct_snat_port_free(old, port, p, be, now, &dnat, &snat, &verified, &spare);
		if (found & SNAT_HALF_OPEN) {
			if (!half_open || spare > half_open_spare) {
				half_open = port;
				half_open_spare = spare;
			}
			continue;
		}
		if (!(found & SNAT_FREE))
			continue;
		if (found & SNAT_TIME_WAIT) {
			if (!time_wait)
				time_wait = port;
			continue;
		}
		if (ct_take_snat_port(&rk, reply, found, &dnat, &snat) == 0) {
			*port_out = port;
			return 0;
		}
	}
	port = time_wait;
	if (!port && half_open && half_open_spare >= 0)
		port = half_open;
	if (!port)
		return half_open ? SNAT_WAIT : -1;
	/* Judged again: another CPU may have taken or changed the port since. */
	ct_key(&rk, be->addr[0], be->port, cfg->node_addr[0], port, p->key.proto, DIR_INGRESS);
	old = bpf_map_lookup_elem(&conntrack, &rk);
	found = old ? ct_snat_port_free(old, port, p, be, now, &dnat, &snat, &verified, &spare)
		    : SNAT_FREE;
	if ((found & SNAT_HALF_OPEN) && spare >= 0)
		found |= SNAT_FREE;
	if (!(found & SNAT_FREE) || ct_take_snat_port(&rk, reply, found, &dnat, &snat))
		return half_open ? SNAT_WAIT : -1;
	if (port == half_open)
		count_event(EV_SNAT_HALF_OPEN_TAKEN);
	*port_out = port;
	return 0;
}

#endif
