/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-CPU counters: per service, per backend, and program events. */
#ifndef BLIXT_COUNTERS_H
#define BLIXT_COUNTERS_H

#include "maps.h"

static __always_inline void count_event(__u32 ev)
{
	__u64 *n = bpf_map_lookup_elem(&events, &ev);

	if (n)
		*n += 1;
}

/* Count one packet of a flow on its service and backend; reply = backend -> client. */
static __always_inline void count_flow(__u32 service_id, __u32 backend_id, __u32 bytes, int reply,
				       int new_flow)
{
	struct counters *s = bpf_map_lookup_elem(&service_stats, &service_id);
	struct counters *b = bpf_map_lookup_elem(&backend_stats, &backend_id);

	if (s) {
		if (reply) {
			s->reply_packets++;
			s->reply_bytes += bytes;
		} else {
			s->packets++;
			s->bytes += bytes;
			s->new_flows += new_flow;
		}
	}
	if (b) {
		if (reply) {
			b->reply_packets++;
			b->reply_bytes += bytes;
		} else {
			b->packets++;
			b->bytes += bytes;
			b->new_flows += new_flow;
		}
	}
}

static __always_inline void count_reject(__u32 service_id, __u32 bytes)
{
	struct counters *s = bpf_map_lookup_elem(&service_stats, &service_id);

	if (s) {
		s->packets++;
		s->bytes += bytes;
		s->rejected++;
	}
}

#endif
