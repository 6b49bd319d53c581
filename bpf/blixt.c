// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * blixt: layer-4 load balancer on TC ingress and egress of a node's uplink.
 * The packet path is drawn in bpf/README.md.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "maglev.h"
#include "conntrack.h"
#include "nat.h"
#include "reject.h"
#include "icmp.h"
#include "counters.h"
#include "forward.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The marker entry of a VIP address (any port), or NULL when the address is no VIP. */
static __always_inline struct service_value *vip_marker(__be32 addr)
{
	struct service_key k;

	__builtin_memset(&k, 0, sizeof(k));
	k.addr[0] = addr;
	k.family = FAMILY_V4;
	return bpf_map_lookup_elem(&services, &k);
}

/* Whether an IPv4 address is a VIP (any port): the agent keeps a marker entry per address. */
static __always_inline int is_vip(__be32 addr)
{
	return vip_marker(addr) != 0;
}

/* A tracked flow's backend if it still exists as it was when the flow was created, else NULL. */
static __always_inline const struct backend *backend_alive(const struct flow_value *v)
{
	__u32 id = v->backend_id;
	struct backend *be = bpf_map_lookup_elem(&backends, &id);

	if (be && (be->flags & BE_F_ACTIVE) && be->addr[0] == v->daddr[0] && be->port == v->dport)
		return be;
	return 0;
}

/* Whether a backend id is a backend on another node. */
static __always_inline int backend_remote(__u32 id)
{
	struct backend *be = bpf_map_lookup_elem(&backends, &id);

	return be && (be->flags & BE_F_REMOTE);
}

/* Whether an interface faces this node's pods (listed in pod_ifaces). */
static __always_inline int pod_iface(__u32 ifindex)
{
	__u32 *flags = bpf_map_lookup_elem(&pod_ifaces, &ifindex);

	return flags && (*flags & IFACE_F_PODS);
}

/* Whether a packet at ingress came from one of this node's pods. */
static __always_inline int from_pod(const struct __sk_buff *skb)
{
	return pod_iface(skb->ifindex);
}

/*
 * pod_iface() where most interfaces asked about are not the pods': a packet to no VIP (every
 * interface's traffic but the pods' asks) and a forwarded packet's route. A slot of
 * pod_iface_slots rules most out without the hash lookup (~21 ns). Not in new_flow(): a second
 * way out there doubled the verifier's paths through the SNAT port search (over 1M instructions).
 */
static __always_inline int pod_iface_hinted(__u32 ifindex)
{
	__u32 slot = ifindex % POD_IFACE_SLOTS;
	__u32 *hint = bpf_map_lookup_elem(&pod_iface_slots, &slot);

	if (hint && *hint == POD_SLOT_NONE)
		return 0;
	return pod_iface(ifindex);
}

/* Where a flow's route must lead for its packet to skip the stack (pass_or_forward's want). */
enum fwd_out {
	FWD_OUT_SAME = 0,	/* back out of the device it came in on: a remote backend's flow */
	FWD_OUT_PODS,		/* to an interface facing the pods: a client's packet to a local backend */
	FWD_OUT_NOT_PODS,	/* away from the pods: a local backend's reply to its client */
};

/* Whether the route fwd_route() found leads where want says. */
static __always_inline int fwd_out_ok(const struct __sk_buff *skb,
				      const struct bpf_fib_lookup *fib, __u32 want)
{
	if (want == FWD_OUT_SAME)
		return fib->ifindex == skb->ifindex;
	return pod_iface_hinted(fib->ifindex) == (want == FWD_OUT_PODS);
}

/*
 * The last step of a flow's packet at ingress (forward.h): routed as the stack would route it
 * after v (the translation at ingress); when the route leads where want says, translated to out
 * (v plus the egress SNAT of a remote flow, if any) and redirected there, so the stack never sees
 * it; otherwise translated by v and passed to the stack (TC_ACT_OK), as before, and counted.
 * A global function: the verifier checks it once, not once per path that calls it.
 */
__noinline int pass_or_forward(struct __sk_buff *skb, const struct packet *p,
			       const struct flow_value *v, const struct flow_value *out, __u32 want)
{
	struct bpf_fib_lookup fib;
	int how;

	if (!p || !v || !out)
		return TC_ACT_SHOT; /* never: every caller passes all three */
	how = fwd_route(skb, p, v->saddr[0], v->sport, v->daddr[0], v->dport, &fib);
	if (how != FWD_STACK && !fwd_out_ok(skb, &fib, want))
		how = FWD_STACK;
	if (rewrite_tuple(skb, p, how == FWD_STACK ? v : out))
		return TC_ACT_SHOT;
	if (how == FWD_STACK) {
		count_event(EV_FORWARD_VIA_STACK);
		return TC_ACT_OK;
	}
	return fwd_redirect(skb, &fib);
}

/* A tuple to rewrite a packet to, for pass_or_forward()'s out. */
static __always_inline void fwd_tuple(struct flow_value *out, __be32 saddr, __be16 sport,
				      __be32 daddr, __be16 dport)
{
	out->saddr[0] = saddr;
	out->sport = sport;
	out->daddr[0] = daddr;
	out->dport = dport;
}

/*
 * Whether a packet without a live flow may start one. TCP as nf_conntrack judges a segment
 * with no connection: a SYN opens one, a bare ACK is picked up mid-stream (so flows survive an
 * ECMP move or an evicted entry); a RST, a FIN or a SYN-ACK belongs to no flow of ours and is
 * dropped, as kube-proxy drops conntrack's INVALID packets. Every UDP datagram opens a flow.
 */
static __always_inline int opens_flow(const struct packet *p)
{
	__u8 f = p->tcp_flags;

	if (p->key.proto != IPPROTO_TCP)
		return 1;
	if (f & (TCPF_RST | TCPF_FIN))
		return 0;
	if (f & TCPF_SYN)
		return !(f & TCPF_ACK);
	return (f & TCPF_ACK) != 0;
}

/* Reject a new flow's first packet; a subprogram of its own for stack room. */
static __noinline int reject(struct __sk_buff *skb, const struct packet *p, __u32 service_id)
{
	int rc;

	/* A RST is never answered (RFC 9293): dropped, counted neither as a reject nor a failure. */
	if (p->key.proto == IPPROTO_TCP && (p->tcp_flags & TCPF_RST))
		return TC_ACT_SHOT;
	count_reject(service_id, skb->len);
	if (p->key.proto == IPPROTO_TCP) {
		rc = reject_tcp(skb, p);
		count_event(rc == TC_ACT_REDIRECT ? EV_REJECT_TCP : EV_REJECT_FAILED);
	} else {
		rc = reject_udp(skb, p);
		count_event(rc == TC_ACT_REDIRECT ? EV_REJECT_UDP : EV_REJECT_FAILED);
	}
	return rc;
}

/* Whether this CPU may still answer an SNAT-exhausted flow this second (takes one). */
static __always_inline int snat_reject_allowed(__u64 now)
{
	__u32 zero = 0;
	__u64 *b = bpf_map_lookup_elem(&reject_budget, &zero);
	__u64 sec = now / NS_PER_SEC;

	if (!b)
		return 1;
	if ((*b >> 32) != (sec & 0xffffffff)) {
		*b = (sec << 32) | 1;
		return 1;
	}
	if ((*b & 0xffffffff) >= SNAT_REJECTS_PER_SEC)
		return 0;
	*b += 1;
	return 1;
}

/* Returned by new_flow() when the packet must be rejected. */
#define NEW_FLOW_REJECT (-2)
/*
 * Returned by new_flow() for a source-translated flow to a remote backend: tracked, not yet
 * translated. The caller translates it as the flow's next packets are (to_remote), in a frame of
 * its own: new_flow's and the route lookup's together exceed the 512 bytes of BPF stack.
 */
#define NEW_FLOW_REMOTE (-3)
/* Returned by new_flow() for a local backend's flow from a client that is no pod: first_to_local. */
#define NEW_FLOW_LOCAL (-4)

/*
 * A packet to a service without a live conntrack entry: pick a backend, track, translate. A global
 * function: the verifier checks it once, not once per path of process() that reaches it (902k of
 * its 1M instructions went to that; 680k now). One call per new flow, none per later packet.
 */
__noinline int new_flow(struct __sk_buff *skb, struct packet *p, const struct service_value *svc,
			__u64 now)
{
	struct flow_value reply, v; /* v: the SNAT entry, then the DNAT entry */
	struct flow_key k;
	struct backend *be;
	__u32 hash, bid;
	__u32 zero = 0;
	__be16 nat_port;
	__be32 nat_addr = 0; /* set when the flow is source-translated */

	if (!p || !svc)
		return TC_ACT_SHOT; /* never: process() passes both */
	hash = flow_hash(&p->key);
	bid = maglev_pick(svc, hash);
	if (bid == BACKEND_REJECT)
		return NEW_FLOW_REJECT;
	be = bpf_map_lookup_elem(&backends, &bid);
	if (!be || !(be->flags & BE_F_ACTIVE))
		return NEW_FLOW_REJECT;

	/* Packets towards the client leave as VIP:port. */
	ct_value(&reply, CT_KIND_REPLY, p->key.daddr, p->key.dport, p->key.saddr,
		 p->key.sport, svc->id, bid, now);
	/*
	 * Remote backends see the node as the client (kube-proxy's "Cluster"), unless the
	 * service keeps client addresses. A client that is one of this node's pods is always
	 * translated (hairpin): a local backend's reply would otherwise go straight back
	 * over the pod network, never through the program, and not come from the VIP.
	 */
	if (((be->flags & BE_F_REMOTE) && !(svc->flags & SVC_F_KEEP_CLIENT)) || from_pod(skb)) {
		struct config *cfg = bpf_map_lookup_elem(&config, &zero);

		int rc = cfg ? ct_reserve_snat(cfg, p, be, &reply, now, &nat_port) : -1;

		if (rc) {
			/*
			 * Finished flows hold every port: answered (RST, ICMP unreachable), as a
			 * dropped SYN hangs the client; within a budget, as a spoofed flood would make
			 * every forged source get one. Half-open flows hold some: dropped, and the
			 * client's retransmitted SYN takes one once it is old enough.
			 */
			count_event(EV_SNAT_EXHAUSTED);
			if (rc == SNAT_WAIT) {
				count_event(EV_SNAT_WAIT_DROPPED);
				return TC_ACT_SHOT;
			}
			return snat_reject_allowed(now) ? NEW_FLOW_REJECT : TC_ACT_SHOT;
		}
		nat_addr = cfg->node_addr[0];
		ct_value(&v, CT_KIND_SNAT, nat_addr, nat_port, be->addr[0], be->port, svc->id, bid,
			 now);
		ct_key(&k, p->key.saddr, p->key.sport, be->addr[0], be->port, p->key.proto,
		       DIR_EGRESS);
		if (bpf_map_update_elem(&conntrack, &k, &v, BPF_ANY))
			goto fail;
	} else {
		ct_key(&k, be->addr[0], be->port, p->key.saddr, p->key.sport, p->key.proto,
		       DIR_EGRESS);
		if (bpf_map_update_elem(&conntrack, &k, &reply, BPF_ANY))
			goto fail;
	}

	ct_value(&v, CT_KIND_DNAT, p->key.saddr, p->key.sport, be->addr[0], be->port,
		 svc->id, bid, now);
	/*
	 * A flow met mid-stream (an ECMP move, an evicted entry) is picked up, but counts as
	 * established only once the backend answers: a spoofed ACK holds its entries 60 s.
	 */
	if (p->key.proto == IPPROTO_TCP && !(p->tcp_flags & TCPF_SYN))
		v.state = CT_PICKUP;
	if (p->key.proto == IPPROTO_TCP) {
		v.state = ct_next_state(v.state, p->tcp_flags, 0);
		v.flags = ct_fin_flag(p->tcp_flags, 0);
	}
	if (bpf_map_update_elem(&conntrack, &p->key, &v, BPF_ANY))
		goto fail;

	count_flow(svc->id, bid, skb->len, 0, 1);
	if (nat_addr && (be->flags & BE_F_REMOTE))
		return NEW_FLOW_REMOTE;
	if (!nat_addr && !(be->flags & BE_F_REMOTE))
		return NEW_FLOW_LOCAL;
	if (rewrite_tuple(skb, p, &v))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
fail:
	count_event(EV_CT_CREATE_FAILED);
	return TC_ACT_SHOT;
}

/*
 * A client's packet of a tracked flow to a remote backend, at ingress: with the flow's SNAT entry
 * (the egress translation) it may skip the stack; without one (keepClientAddress) it takes the
 * stack, whose egress hook finds nothing to translate.
 */
static __noinline int to_remote(struct __sk_buff *skb, const struct packet *p,
				const struct flow_value *v, __u64 now)
{
	struct flow_value out;
	struct flow_value *s;
	struct flow_key k;

	ct_key(&k, p->key.saddr, p->key.sport, v->daddr[0], v->dport, p->key.proto, DIR_EGRESS);
	s = bpf_map_lookup_elem(&conntrack, &k);
	if (!s || s->kind != CT_KIND_SNAT) {
		if (rewrite_tuple(skb, p, v))
			return TC_ACT_SHOT;
		return TC_ACT_OK;
	}
	/* As the egress hook would; it will not see this packet's tuple if it skips the stack. */
	if (ct_age(now, s->last_seen) > CT_REFRESH_NS)
		s->last_seen = now;
	fwd_tuple(&out, s->saddr[0], s->sport, v->daddr[0], v->dport);
	return pass_or_forward(skb, p, v, &out, FWD_OUT_SAME);
}

/*
 * The first packet of a local backend's flow from a client that is no pod, at ingress: whether the
 * flow skips the stack is decided here, once, for both directions. It does when the route leads to
 * an interface facing the pods (listed in pod_ifaces: the program runs at its ingress, where the
 * backend's replies enter the node); both entries are marked (CT_F_PAST_STACK) and the packet is
 * redirected. Otherwise the flow takes the stack both ways, as before, and costs later packets
 * no route lookup (a node whose pod interfaces carry no program). A global function.
 */
__noinline int first_to_local(struct __sk_buff *skb, const struct packet *p, struct flow_value *v)
{
	struct bpf_fib_lookup fib;
	struct flow_value *reply;
	struct flow_key k;
	int how;

	if (!p || !v)
		return TC_ACT_SHOT; /* never: process() passes both */
	how = fwd_route(skb, p, v->saddr[0], v->sport, v->daddr[0], v->dport, &fib);
	if (how != FWD_STACK && fwd_out_ok(skb, &fib, FWD_OUT_PODS)) {
		ct_key(&k, v->daddr[0], v->dport, v->saddr[0], v->sport, p->key.proto, DIR_EGRESS);
		reply = bpf_map_lookup_elem(&conntrack, &k);
		if (reply && reply->kind == CT_KIND_REPLY) {
			reply->flags |= CT_F_PAST_STACK;
			v->flags |= CT_F_PAST_STACK;
		} else {
			how = FWD_STACK;
		}
	} else {
		how = FWD_STACK;
	}
	if (rewrite_tuple(skb, p, v))
		return TC_ACT_SHOT;
	if (how == FWD_STACK)
		return TC_ACT_OK;
	return fwd_redirect(skb, &fib);
}

/*
 * A local backend's reply to a client that is no pod, at the ingress of the pod interface, looked
 * up by its REPLY entry (the egress key: backend -> client) when its flow skips the stack
 * (CT_F_PAST_STACK). Routed as the stack routes it (untranslated: on the stack path the uplink's
 * egress translates it after the stack); when the route leads away from the pods, tracked and
 * translated here (VIP:port -> client) and redirected, so the stack sees neither direction of the
 * flow; otherwise passed untouched and counted, and the uplink's egress does it all as before.
 * A global function, for the verifier as pass_or_forward().
 */
__noinline int from_local_backend(struct __sk_buff *skb, const struct packet *p,
				  struct flow_value *v, __u64 now)
{
	struct bpf_fib_lookup fib;
	int how;

	if (!p || !v)
		return TC_ACT_SHOT; /* never: process() passes both */
	how = fwd_route(skb, p, p->key.saddr, p->key.sport, p->key.daddr, p->key.dport, &fib);
	if (how == FWD_STACK || !fwd_out_ok(skb, &fib, FWD_OUT_NOT_PODS)) {
		count_event(EV_FORWARD_VIA_STACK);
		return TC_ACT_OK;
	}
	if (ct_on_reply(v, p, now)) {
		bpf_map_delete_elem(&conntrack, &p->key);
		return TC_ACT_OK;
	}
	count_flow(v->service_id, v->backend_id, skb->len, 1, 0);
	if (rewrite_tuple(skb, p, v))
		return TC_ACT_SHOT;
	return fwd_redirect(skb, &fib);
}

/* A packet of a tracked flow at the hook that owns its entry; be: a DNAT entry's live backend. */
static __always_inline int tracked(struct __sk_buff *skb, struct packet *p, struct flow_value *v,
				   const struct backend *be, __u64 now)
{
	if (v->kind == CT_KIND_REPLY) {
		if (ct_on_reply(v, p, now)) {
			bpf_map_delete_elem(&conntrack, &p->key);
			return TC_ACT_OK;
		}
		count_flow(v->service_id, v->backend_id, skb->len, 1, 0);
		/* Replies at ingress are those of source-translated flows (node:port). */
		if (p->key.dir == DIR_INGRESS && backend_remote(v->backend_id))
			return pass_or_forward(skb, p, v, v, FWD_OUT_SAME);
	} else if (v->kind == CT_KIND_SNAT) {
		if (ct_age(now, v->last_seen) > CT_REFRESH_NS)
			v->last_seen = now;
	} else {
		if (p->key.proto == IPPROTO_TCP)
			ct_touch(v, ct_next_state(v->state, p->tcp_flags, 0),
				 ct_fin_flag(p->tcp_flags, 0), now);
		else
			ct_touch(v, v->state, 0, now);
		count_flow(v->service_id, v->backend_id, skb->len, 0, 0);
		if (be && (be->flags & BE_F_REMOTE))
			return to_remote(skb, p, v, now);
		/* A local backend's flow whose first packet skipped the stack (first_to_local). */
		if (be && (v->flags & CT_F_PAST_STACK))
			return pass_or_forward(skb, p, v, v, FWD_OUT_PODS);
	}
	if (rewrite_tuple(skb, p, v))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

static __always_inline int process(struct __sk_buff *skb, __u8 dir)
{
	struct packet p;
	struct service_key sk;
	struct service_value *svc;
	struct flow_value *v;
	__u64 now;
	int rc = parse_packet(skb, &p, dir);

	switch (rc) {
	case PARSE_OK:
		break;
	case PARSE_ICMP:
		return icmp_translate(skb, &p, dir);
	case PARSE_FRAGMENT:
		/* Later fragments carry no ports: no fragment to a VIP can be routed right. */
		if (dir == DIR_INGRESS && is_vip(p.key.daddr)) {
			count_event(EV_FRAG_DROPPED);
			return TC_ACT_SHOT;
		}
		return TC_ACT_OK;
	case PARSE_TRUNCATED_L4:
		if (dir == DIR_INGRESS && is_vip(p.key.daddr)) {
			count_event(EV_MALFORMED_DROPPED);
			return TC_ACT_SHOT;
		}
		return TC_ACT_OK;
	default:
		return TC_ACT_OK;
	}

	v = bpf_map_lookup_elem(&conntrack, &p.key);
	if (!v && dir != DIR_INGRESS)
		return TC_ACT_OK; /* the common egress case: read no clock */
	now = ct_now();
	if (v && v->kind != CT_KIND_DNAT)
		return tracked(skb, &p, v, 0, now);
	if (dir != DIR_INGRESS)
		return TC_ACT_OK;
	if (v) {
		int reopened = p.key.proto == IPPROTO_TCP && (p.tcp_flags & TCPF_SYN) &&
			       !(p.tcp_flags & TCPF_ACK) && ct_closed_or_closing(v->state);

		if (!ct_expired(v, p.key.proto, now) && !reopened) {
			const struct backend *be = backend_alive(v);

			if (be)
				return tracked(skb, &p, v, be, now);
			count_event(EV_BACKEND_GONE);
		}
	}

	__builtin_memset(&sk, 0, sizeof(sk));
	sk.addr[0] = p.key.daddr;
	sk.port = p.key.dport;
	sk.proto = p.key.proto;
	sk.family = FAMILY_V4;
	svc = bpf_map_lookup_elem(&services, &sk);
	if (!svc) {
		/*
		 * A VIP address, a port/protocol no listener has: refuse it as a host with no
		 * socket would (RST, ICMP port unreachable) rather than let the kernel drop it.
		 */
		svc = vip_marker(p.key.daddr);
		if (svc)
			return reject(skb, &p, svc->id);
		/* A local backend's reply to a client that is no pod: its REPLY entry is egress's. */
		if (!pod_iface_hinted(skb->ifindex))
			return TC_ACT_OK;
		p.key.dir = DIR_EGRESS;
		v = bpf_map_lookup_elem(&conntrack, &p.key);
		if (v && v->kind == CT_KIND_REPLY && (v->flags & CT_F_PAST_STACK))
			return from_local_backend(skb, &p, v, now);
		return TC_ACT_OK;
	}
	if (svc->flags & SVC_F_VIP_MARKER)
		return TC_ACT_OK;
	if (!opens_flow(&p))
		return TC_ACT_SHOT;
	rc = new_flow(skb, &p, svc, now);
	if (rc == NEW_FLOW_REJECT)
		return reject(skb, &p, svc->id);
	if (rc == NEW_FLOW_REMOTE) {
		v = bpf_map_lookup_elem(&conntrack, &p.key);
		return v ? to_remote(skb, &p, v, now) : TC_ACT_SHOT;
	}
	if (rc == NEW_FLOW_LOCAL) {
		v = bpf_map_lookup_elem(&conntrack, &p.key);
		return v ? first_to_local(skb, &p, v) : TC_ACT_SHOT;
	}
	return rc;
}

SEC("tc")
int blixt_ingress(struct __sk_buff *skb)
{
	return process(skb, DIR_INGRESS);
}

SEC("tc")
int blixt_egress(struct __sk_buff *skb)
{
	return process(skb, DIR_EGRESS);
}
