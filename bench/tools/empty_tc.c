// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The floor of a per-packet figure: a TC program that does nothing, run the same way. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int empty_tc(struct __sk_buff *skb)
{
	return 0; /* TC_ACT_OK */
}
